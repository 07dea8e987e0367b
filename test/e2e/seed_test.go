package e2e

import (
	"archive/tar"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/sandbox/image/imagetest"
)

// The seed's pipeline (issue 18): a deploy shaped like login.gov's
// environment runners' terraform jobs, run by the real GitLab Runner with
// writ as its executor.
//
//   - The deploy repository (the fixture's acme/app) changes only through
//     merge requests: the job's commit is GitLab's unsigned merge commit,
//     admitted because carol and dave approved it (source.signature: none).
//   - The job runs in an image pinned by digest, served by a registry on
//     127.0.0.1, holding bash, cat and the host's terraform (a static
//     binary).
//   - terraform init, plan -out and apply a configuration with no
//     providers (terraform_data is built in, so nothing is downloaded and
//     the job runs with network: none), reading its settings from a
//     settings directory, and the job writes a JUnit report.

// seedTerraform is the deploy repository's terraform configuration: no
// providers to download, one resource of the built-in terraform_data.
const seedTerraform = `terraform {
  required_version = ">= 1.4"
}

variable "env_name" {
  type = string
}

variable "asg_target" {
  type = string
}

resource "terraform_data" "deploy" {
  input = "${var.env_name}:${var.asg_target}"
}

output "deployed" {
  value = terraform_data.deploy.output
}
`

// seedSettings is the settings the deploy reads (login.gov keeps them in
// a private repository, a submodule of the deploy repository).
const seedSettings = `env_name = "production"
`

// seedTarget is the auto-scaling group the deploy targets: login.gov's
// jobs name it in a CI_-prefixed user variable, CI_ASG_TARGET.
const seedTarget = "idp-production-asg"

// seedScript is the job's script, as .gitlab-ci.yml would write it and as
// the allowlist entry admits it.
var seedScript = []string{
	"cd terraform",
	"terraform init -input=false -no-color",
	`terraform plan -input=false -no-color -var-file=../settings/production.tfvars -var "asg_target=$ASG_TARGET" -out=../plan.tfplan`,
	"terraform apply -input=false -no-color ../plan.tfplan",
	"cd ..",
	`test -s plan.tfplan && echo "plan kept: plan.tfplan"`,
	`printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites><testsuite name="terraform" tests="1" failures="0"><testcase classname="deploy" name="apply %s"/></testsuite></testsuites>\n' "$CI_COMMIT_SHORT_SHA" > junit.xml`,
	"cat junit.xml",
}

// seedJob is the job's name in .gitlab-ci.yml.
const seedJob = "terraform-apply"

// seedEntry is the allowlist entry for the seed's job, admitting image.
func seedEntry(f *Fixture, image string) string {
	var b strings.Builder
	b.WriteString("\n  - name: idp-terraform-production\n    match:\n      project: " + LegitProject + "\n      job: " + seedJob +
		"\n      environments: [" + LegitEnvironment + "]\n      refs: [refs/heads/" + LegitRef + "]\n    definition:\n")
	if image != "" {
		b.WriteString("      image: " + image + "\n")
	}
	b.WriteString("      script:\n")
	for _, l := range seedScript {
		b.WriteString("        - " + yamlQuote(l) + "\n")
	}
	b.WriteString("      variables:\n        ASG_TARGET: {value: " + seedTarget + "}\n        CHECKPOINT_DISABLE: {value: \"1\"}\n" +
		"        TF_IN_AUTOMATION: {value: \"1\"}\n")
	b.WriteString("      network: none\n      timeout: 10m\n")
	b.WriteString("    source:\n      repository: " + f.Repos.SourceURL(RepoApp) + "\n      mode: strict\n      signature: none\n" +
		"      descends_from: " + f.Hist.Head + "\n      approvals:\n        signers: [approvers]\n        threshold: 2\n")
	return b.String()
}

// seedImage pushes the job's image to a registry on 127.0.0.1 and returns
// its reference pinned by digest.
func seedImage(t *testing.T, terraform string) string {
	t.Helper()
	start := time.Now()
	files := imagetest.HostPrograms(t, "/bin/bash", "/bin/cat", terraform)
	files = append(files, imagetest.Entry{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		imagetest.Entry{Name: "etc/", Type: tar.TypeDir, Mode: 0o755},
		imagetest.Entry{Name: "etc/passwd", Body: "root:x:0:0:root:/root:/bin/bash\n"})
	ref := imagetest.Push(t, imagetest.Registry(t), "idp/deploy-image", imagetest.Layer(t, files...))
	t.Logf("image with terraform built and pushed in %s", time.Since(start).Round(time.Millisecond))
	return ref
}

// TestSeedPipeline runs the seed's deploy end to end: admitted on two
// approvals of GitLab's unsigned merge commit, in its pinned image, and
// terraform plans and applies.
func TestSeedPipeline(t *testing.T) {
	t.Parallel()
	terraform, err := exec.LookPath("terraform")
	if err != nil {
		t.Skip("terraform is not on PATH: the seed's pipeline runs terraform init, plan and apply in the job's image; install terraform (a static linux binary) to run it")
	}
	keys := newKeys(t)
	f, e := newWritFixture(t, keys, "seed", false)
	ar, err := approvalRepos(f)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := trustRepos(f)
	if err != nil {
		t.Fatal(err)
	}
	image := seedImage(t, terraform)
	if _, err := publishApproved(f, tr, func(y string) string { return addApprovers(y, ar) + seedEntry(f, image) }, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.Config, []byte(strings.Replace(string(cfg), `images = "ignore"`, `images = "run"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	// The merge request's branch adds the terraform configuration; GitLab
	// merges it with an unsigned merge commit, which carol and dave approve
	// for production.
	m, err := mergeToMain(f, f.Hist.Head, map[string]string{
		"terraform/main.tf":          seedTerraform,
		"settings/production.tfvars": seedSettings,
	}, Unsigned)
	if err != nil {
		t.Fatal(err)
	}
	if err := publishApprovals(f, ar, m, carolAndDave); err != nil {
		t.Fatal(err)
	}

	p := f.W.Payload(Job{Project: LegitProject, Name: seedJob, Environment: LegitEnvironment,
		RepoURL: f.Repos.URL(RepoApp), Ref: LegitRef, Sha: m, Script: seedScript, Timeout: 600})
	p.Image = &Image{Name: image}
	for k, v := range map[string]string{"ASG_TARGET": seedTarget, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"} {
		p.SetVar(k, v)
	}
	o := f.W.RunJob(testCtx(t), p)
	trace := plainTrace(o.Trace)
	if !o.Succeeded() {
		t.Fatalf("the seed's deploy failed:\n%s", o)
	}
	for _, want := range []string{
		"writ: admitted by entry \"idp-terraform-production\"",
		"no author signature: approved by person carol, key SHA256:",
		"writ: image " + image + " fetched and verified",
		"Terraform has been successfully initialized!",
		"\nplan kept: plan.tfplan\n",
		"Apply complete! Resources: 1 added, 0 changed, 0 destroyed.",
		`deployed = "production:` + seedTarget + `"`,
		`<testcase classname="deploy" name="apply ` + m[:8] + `"/>`,
	} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("%s", o)
	}
}
