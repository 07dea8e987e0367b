package e2e

import (
	"fmt"
	"strings"
)

// Scenarios for variable semantics (issue #18): $VAR expansion in values
// and the image as GitLab Runner does it, computed from signed data only;
// variable sets; CI_-prefixed user variables; CI_JOB_STATUS in
// after_script. Each publishes allowlist version 8 with the entries below.
// The happy path is run against both executors and must print the same
// expanded values: writ's expansion is the runner's.

// Jobs of the variable scenarios.
const (
	VarsJob  = "deploy-vars"
	ScaleJob = "scale"
)

// Values of the variable scenarios.
const (
	varsAccount = "123456789012"
	varsDigest  = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	// varsImage is the entry's image as GitLab sends it; expanded, it is
	// LegitImage.
	varsImage = "registry.example.com/deploy@$IMAGE_DIGEST"
	// varsLine prints what the job sees; varsAfter is its after_script.
	varsLine  = `echo "vars: host=$HOST asg=$CI_ASG_TARGET lit=$LITERAL role=$ROLE note=$NOTE"`
	varsAfter = `echo "after: status=$CI_JOB_STATUS host=$HOST asg=$CI_ASG_TARGET lit=$LITERAL role=$ROLE note=$NOTE"`
	// varsAfterOut is varsAfter's output when the legitimate job succeeds.
	varsAfterOut = "after: status=success host=idp.prod.example.gov asg=asg-web lit=title=$CI_COMMIT_TITLE role=arn:aws:iam::" + varsAccount + ":role/deploy note=release app"
	scaleLine    = `echo "scaling ${CI_ASG_TARGET:-the first group in the account}"`
	// attackerTitle is GitLab's CI_COMMIT_TITLE in the attacks: text
	// GitLab chooses, which no entry admits.
	attackerTitle = "attacker-chosen title"
)

// varsAllowlist is the edit that publishes version 8: a variable set for
// the AWS account and the deploy image, the vars entry that includes it,
// and the scale entry, whose script reads CI_ASG_TARGET but which does not
// name it.
func varsAllowlist(f *Fixture) func(string) string {
	return func(y string) string {
		y = versionLine.ReplaceAllString(y, "version: 8")
		sets := "variable_sets:\n" +
			"  aws-prod:\n" +
			"    AWS_ACCOUNT_ID: {value: '" + varsAccount + "'}\n" +
			"    IMAGE_DIGEST: {value: '" + varsDigest + "'}\n\n"
		entries := `  - name: app-vars-production
    match:
      project: acme/app
      job: ` + VarsJob + `
      environments: [production]
      refs: [refs/heads/main]
    definition:
      image: ` + varsImage + `
      variable_sets: [aws-prod]
      script:
        - ` + yamlQuote(varsLine) + `
      after_script:
        - ` + yamlQuote(varsAfter) + `
      variables:
        ENV_NAME: {value: prod}
        HOST: {value: 'idp.${ENV_NAME}.example.gov'}
        ROLE: {value: 'arn:aws:iam::${AWS_ACCOUNT_ID}:role/deploy'}
        CI_ASG_TARGET: {value: asg-web}
        LITERAL: {value: 'title=$CI_COMMIT_TITLE', raw: true}
        NOTE: {pattern: '^[A-Za-z0-9 ${}_.-]*$'}
    source:
      repository: ` + f.Repos.SourceURL(RepoApp) + `
      signers: [app-team]
      mode: commit

  - name: app-scale-production
    match:
      project: acme/app
      job: ` + ScaleJob + `
      environments: [production]
      refs: [refs/heads/main]
    definition:
      script:
        - ` + yamlQuote(scaleLine) + `
    source:
      repository: ` + f.Repos.SourceURL(RepoApp) + `
      signers: [app-team]
      mode: commit

`
		return strings.Replace(y, "\njobs:\n", "\n"+sets+"jobs:\n"+entries, 1)
	}
}

// varsPayload is the vars job as GitLab sends it for the legitimate
// pipeline: the variables unexpanded, LITERAL raw.
func (f *Fixture) varsPayload() *Payload {
	p := f.LegitPayload()
	p.JobInfo.Name = VarsJob
	p.SetVar("CI_JOB_NAME", VarsJob)
	p.Step("script").Script = []string{varsLine}
	p.Step("after_script").Script = []string{varsAfter}
	p.Image = &Image{Name: varsImage}
	p.Variables = withoutVar(p.Variables, "DEPLOY_TARGET")
	for _, kv := range [][2]string{
		{"AWS_ACCOUNT_ID", varsAccount}, {"IMAGE_DIGEST", varsDigest}, {"ENV_NAME", "prod"},
		{"HOST", "idp.${ENV_NAME}.example.gov"}, {"ROLE", "arn:aws:iam::${AWS_ACCOUNT_ID}:role/deploy"},
		{"CI_ASG_TARGET", "asg-web"}, {"NOTE", "release ${CI_PROJECT_NAME}"},
	} {
		p.SetVar(kv[0], kv[1])
	}
	p.Variables = append(p.Variables, Variable{Key: "LITERAL", Value: "title=$CI_COMMIT_TITLE", Public: true, Raw: true})
	p.SetVar("CI_COMMIT_TITLE", attackerTitle)
	// The pass-through executor starts the image by name, expanded or not.
	f.W.AddImage(varsImage, "echo deploy image ready")
	return p
}

func withoutVar(vars []Variable, key string) []Variable {
	out := vars[:0:0]
	for _, v := range vars {
		if v.Key != key {
			out = append(out, v)
		}
	}
	return out
}

// traceShows is pass-through evidence: the run's trace holds want.
func traceShows(want string) func(f *Fixture, o Outcome) error {
	return func(f *Fixture, o Outcome) error {
		if !strings.Contains(o.Trace, want) {
			return fmt.Errorf("the trace lacks %q", want)
		}
		return nil
	}
}

func init() {
	Scenarios = append(Scenarios,
		Scenario{
			Name: "vars-expanded-from-signed-values", Category: CatVariables, Robustness: true,
			Description: "The vars job as its entry admits it: an image written $IMAGE_DIGEST and values written ${ENV_NAME} and ${AWS_ACCOUNT_ID} (from a variable set), a raw value, a CI_-prefixed user variable and CI_JOB_STATUS in after_script. writ and the runner print the same expanded values.",
			Mutate: func(f *Fixture) error {
				f.Payload = f.varsPayload()
				return publishAllowlist(f, varsAllowlist(f))
			},
			PassThrough: func(f *Fixture, o Outcome) error {
				if !o.Succeeded() {
					return fmt.Errorf("the job did not succeed")
				}
				return traceShows(varsAfterOut)(f, o)
			},
			Shows: "the runner's own expansion prints what writ prints: " + varsAfterOut,
			Writ:  Expectation{Verdict: Admit, Reason: "writ: admitted", Detail: varsAfterOut},
		},
		Scenario{
			Name: "var-image-digest-swapped", Category: CatImage,
			Description: "The vars job's image is written registry.example.com/deploy@$IMAGE_DIGEST; GitLab sends IMAGE_DIGEST with another digest, so the runner expands the image to one the attacker built.",
			Mutate: func(f *Fixture) error {
				f.Payload = f.varsPayload()
				other := "sha256:" + strings.Repeat("e", 64)
				f.Payload.SetVar("IMAGE_DIGEST", other)
				f.W.AddImage("registry.example.com/deploy@"+other, f.Canary.Code())
				return publishAllowlist(f, varsAllowlist(f))
			},
			Writ: refuse("image", "image differs from the allowlist entry"),
		},
		Scenario{
			Name: "var-reference-pulls-gitlab-value", Category: CatVariables,
			Description: "NOTE's pattern admits a note with $ references; GitLab sends NOTE=\"release ${CI_COMMIT_TITLE}\", so the runner fills in GitLab's own CI_COMMIT_TITLE, a value no entry admits.",
			Mutate: func(f *Fixture) error {
				f.Payload = f.varsPayload()
				f.Payload.SetVar("NOTE", "release ${CI_COMMIT_TITLE}")
				return publishAllowlist(f, varsAllowlist(f))
			},
			PassThrough: traceShows("note=release " + attackerTitle),
			Shows:       "the runner expanded $CI_COMMIT_TITLE to GitLab's value in the job",
			Writ:        refuse("variables", "variable NOTE refers to $CI_COMMIT_TITLE, which GitLab sends but the allowlist entry does not admit"),
		},
		Scenario{
			Name: "var-ci-prefixed-user-variable-sneaked", Category: CatVariables,
			Description: "The scale job's script filters on CI_ASG_TARGET, which its entry does not name; GitLab sends CI_ASG_TARGET=attacker-asg, a user variable GitLab does not define (writ used to drop such names silently, so the script acted on the first group in the account).",
			Mutate: func(f *Fixture) error {
				p := f.LegitPayload()
				p.JobInfo.Name = ScaleJob
				p.SetVar("CI_JOB_NAME", ScaleJob)
				p.Step("script").Script = []string{scaleLine}
				p.Steps = p.Steps[:1]
				p.Image = nil
				p.Variables = withoutVar(p.Variables, "DEPLOY_TARGET")
				p.SetVar("CI_ASG_TARGET", "attacker-asg")
				f.Payload = p
				return publishAllowlist(f, varsAllowlist(f))
			},
			PassThrough: traceShows("scaling attacker-asg"),
			Shows:       "GitLab's CI_ASG_TARGET chose the group the job scaled",
			Writ:        refuse("variables", "variable CI_ASG_TARGET is not a variable GitLab defines, so it is a user variable, and the allowlist entry does not name it"),
		},
		Scenario{
			Name: "var-expand-false-flipped", Category: CatVariables,
			Description: "LITERAL is signed raw (expand: false) as title=$CI_COMMIT_TITLE; GitLab sends it with the same text but expanded, so the runner replaces the reference with GitLab's CI_COMMIT_TITLE.",
			Mutate: func(f *Fixture) error {
				f.Payload = f.varsPayload()
				f.Payload.Variables = withoutVar(f.Payload.Variables, "LITERAL")
				f.Payload.SetVar("LITERAL", "title=$CI_COMMIT_TITLE")
				return publishAllowlist(f, varsAllowlist(f))
			},
			PassThrough: traceShows("lit=title=" + attackerTitle),
			Shows:       "the runner expanded the value the entry signs as raw",
			Writ:        refuse("variables", "variable LITERAL is expanded ($NAME references are replaced), but the allowlist entry makes it raw"),
		},
	)
}
