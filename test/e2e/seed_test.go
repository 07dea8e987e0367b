package e2e

import (
	"archive/tar"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/sandbox/image/imagetest"
)

// The seed's pipeline (issue 18): a deploy shaped like login.gov's
// environment runners' terraform jobs, run by the real GitLab Runner with
// writ as its executor, from docs/allowlist.md's worked example.
//
//   - The deploy repository (the fixture's acme/app) changes only through
//     merge requests: the job's commit is GitLab's unsigned merge commit,
//     admitted because carol and dave approved it (source.signature: none,
//     mode strict).
//   - Its settings are a second repository, a git submodule at settings,
//     verified under source.extra (an unsigned commit too, approved by
//     carol and dave in that repository) and checked out with a read-only
//     .git, so the script's `git -C settings checkout -q main` works.
//   - The job runs in an image pinned by digest, served by a registry on
//     127.0.0.1, holding the host's bash, git and terraform (a static
//     binary).
//   - terraform init, plan -out and apply a configuration with no
//     providers (terraform_data is built in, so nothing is downloaded and
//     the job runs with network: none), with the target from CI_ASG_TARGET,
//     a CI_-prefixed user variable the entry names.
//   - The plan file and a JUnit report are uploaded (definition.uploads),
//     and after_script reads CI_JOB_STATUS.

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

// seedExample is docs/allowlist.md's worked example, whose entry this
// test runs (allowlist.TestSeedExample keeps the docs identical to it).
const seedExample = "../../allowlist/testdata/seed/allowlist.yaml"

// The worked example's values this world replaces with its own.
const (
	seedExampleRepository = "https://gitlab.example.com/idp/deploy.git"
	seedExampleSettings   = "https://gitlab.example.com/idp/deploy-settings.git"
	seedExampleImage      = "registry.example.com/idp/deploy-image@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	seedExampleBase       = "'4b825dc642cb6eb9a060e54bf8d69288fbee4904'"
)

// seedEntry returns the worked example's entry, for this world's
// repository, image and history, and the entry as parsed (for the job
// GitLab sends, which .gitlab-ci.yml writes as the entry admits it).
func seedEntry(t *testing.T, f *Fixture, image string) (string, *allowlist.Entry) {
	t.Helper()
	data, err := os.ReadFile(seedExample)
	if err != nil {
		t.Fatal(err)
	}
	a, err := allowlist.Parse(allowlist.FileName, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, entry, ok := strings.Cut(string(data), "\njobs:\n")
	if !ok || len(a.Jobs) != 1 {
		t.Fatalf("%s: want one entry under jobs", seedExample)
	}
	for _, r := range [][2]string{{seedExampleRepository, f.Repos.SourceURL(RepoApp)}, {seedExampleSettings, f.Repos.SourceURL(RepoSettings)},
		{seedExampleImage, image}, {seedExampleBase, f.Hist.Head}} {
		if !strings.Contains(entry, r[0]) {
			t.Fatalf("%s no longer holds %s", seedExample, r[0])
		}
		entry = strings.ReplaceAll(entry, r[0], r[1])
	}
	return "\n" + entry, a.Jobs[0]
}

// seedImage pushes the job's image to a registry on 127.0.0.1 and returns
// its reference pinned by digest.
func seedImage(t *testing.T, terraform string) string {
	t.Helper()
	start := time.Now()
	files := imagetest.HostPrograms(t, "/bin/bash", "/usr/bin/git", terraform)
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
	// The settings repository changes through merge requests too: its
	// commit is unsigned, and carol and dave approve it for production in
	// that repository.
	sr, err := sourceRepos(f)
	if err != nil {
		t.Fatal(err)
	}
	settings, err := sr.NewRepo(RepoSettings, "idp/deploy-settings", map[string]string{"production.tfvars": seedSettings}, Unsigned)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range carolAndDave {
		a.Repository, a.Commit, a.Environments = f.Repos.SourceURL(RepoSettings), settings, []string{LegitEnvironment}
		if err := ar.PublishApproval(RepoSettings, settings, a); err != nil {
			t.Fatal(err)
		}
	}
	image := seedImage(t, terraform)
	entry, want := seedEntry(t, f, image)
	if _, err := publishApproved(f, tr, func(y string) string { return addApprovers(y, ar) + entry }, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.Config, []byte(strings.Replace(string(cfg), `images = "ignore"`, `images = "run"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	// The merge request's branch adds the terraform configuration and the
	// settings submodule; GitLab merges it with an unsigned merge commit,
	// which carol and dave approve for production.
	mr, err := mergeRepos(f)
	if err != nil {
		t.Fatal(err)
	}
	feature, err := sr.CommitGitlinks(RepoApp, f.Hist.Head, map[string]string{"settings": settings}, map[string]string{
		"terraform/main.tf": seedTerraform,
		".gitmodules":       "[submodule \"settings\"]\n\tpath = settings\n\turl = ../deploy-settings.git\n",
	}, "terraform: deploy with the settings submodule", Trusted)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mr.Merge(RepoApp, f.Hist.Head, feature, GitLabMergeMessage, Unsigned)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Repos.SetBranch(RepoApp, LegitRef, m); err != nil {
		t.Fatal(err)
	}
	if err := publishApprovals(f, ar, m, carolAndDave); err != nil {
		t.Fatal(err)
	}

	// The job as GitLab sends it: .gitlab-ci.yml writes what the entry
	// admits.
	p := f.W.Payload(Job{Project: want.Match.Project, Name: want.Match.Job, Environment: LegitEnvironment,
		RepoURL: f.Repos.URL(RepoApp), Ref: LegitRef, Sha: m, Script: want.Definition.Script, AfterScript: want.Definition.AfterScript, Timeout: 600})
	p.Image = &Image{Name: image}
	for _, v := range want.Definition.Variables {
		p.SetVar(v.Name, v.Value)
	}
	for _, a := range want.Definition.Uploads.Artifacts {
		format := "gzip" // GitLab sends reports gzipped
		if a.Type == allowlist.ArtifactArchive {
			format = "zip"
		}
		p.Artifacts = append(p.Artifacts, Artifact{Name: a.Name, Paths: a.Paths, When: a.When, Type: string(a.Type), Format: format, ExpireIn: a.ExpireIn})
	}
	o := f.W.RunJob(testCtx(t), p)
	trace := plainTrace(o.Trace)
	if !o.Succeeded() {
		t.Fatalf("the seed's deploy failed:\n%s\n%s", trace, o)
	}
	for _, line := range []string{
		"writ: admitted by entry \"" + want.Name + "\"",
		"no author signature: approved by person carol, key SHA256:",
		"writ: source.extra settings: " + f.Repos.SourceURL(RepoSettings) + " at " + settings + " on refs/heads/main, verified (no author signature: approved by person carol, key SHA256:",
		"writ: image " + image + " fetched and verified",
		"Terraform has been successfully initialized!",
		"Apply complete! Resources: 1 added, 0 changed, 0 destroyed.",
		`deployed = "production:idp-production-asg"`,
		"\ndeploy of " + m[:8] + " to " + LegitEnvironment + ": success\n",
	} {
		if !strings.Contains(trace, line) {
			t.Errorf("trace lacks %q", line)
		}
	}
	seedUploads(t, o, m)
	// The audit log names who vouched for the commit.
	recs, err := e.Records()
	if err != nil {
		t.Fatal(err)
	}
	admit, ok := hasEvent(jobRecords(recs, p.ID), "admit")
	if signer, _ := admit.Fields["signer"].(string); !ok || !strings.HasPrefix(signer, "approved by person carol, key SHA256:") || admit.Fields["sha"] != m {
		t.Errorf("audit admission record %+v", admit)
	}
	if t.Failed() {
		t.Logf("%s", o)
	}
}

// seedUploads checks what reached GitLab: the plan file, as the plan
// archive, and the JUnit report naming the merge commit, and nothing else.
func seedUploads(t *testing.T, o Outcome, commit string) {
	t.Helper()
	got := map[string]map[string]string{}
	for _, u := range o.Uploads {
		files, err := UploadedFiles(u)
		if err != nil {
			t.Fatalf("upload %s: %v", u.Query, err)
		}
		got[u.Type] = files
	}
	if len(o.Uploads) != 2 || len(got["archive"]) != 1 || len(got["junit"]) != 1 {
		t.Fatalf("uploads %v, want the plan archive and the JUnit report", got)
	}
	if plan := got["archive"]["production.tfplan"]; !strings.HasPrefix(plan, "PK") {
		t.Errorf("the plan archive holds %d bytes of production.tfplan, not terraform's plan (a zip file)", len(plan))
	}
	if junit := got["junit"]["junit.xml"]; !strings.Contains(junit, `<testcase name="apply `+commit[:8]+`"/>`) {
		t.Errorf("the JUnit report is %q", junit)
	}
}
