package companion

import (
	"reflect"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
)

// TestDeriveUploads: a job's artifacts: become the uploads GitLab's payload
// will list (archive first, reports named by GitLab, when: always, the
// archive's expire_in), or artifacts: true with a note when an entry cannot
// state them.
func TestDeriveUploads(t *testing.T) {
	t.Parallel()
	merged := `
plan:
  stage: deploy
  tags: [prod]
  script: [terraform plan]
  artifacts:
    name: plan
    paths: [plan/]
    expire_in: 1 year
    reports:
      junit: reports/junit.xml
      terraform: [plan.json]
all:
  stage: deploy
  tags: [prod]
  script: [x]
  artifacts: {untracked: true}
dotenv:
  stage: deploy
  tags: [prod]
  script: [x]
  artifacts: {reports: {dotenv: build.env}}
named:
  stage: deploy
  tags: [prod]
  script: [x]
  artifacts: {name: "$CI_JOB_NAME", paths: [out]}
`
	res := &lintResult{Valid: true, MergedYAML: merged}
	for _, n := range []string{"plan", "all", "dotenv", "named"} {
		res.Jobs = append(res.Jobs, lintJob{Name: n, Stage: "deploy", Script: []string{"x"}, TagList: []string{"prod"}})
	}
	jobs, err := deriveJobs(res, []string{"prod"})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]*ciJob{}
	for _, j := range jobs {
		by[j.Name] = j
	}
	want := &allowlist.Uploads{MaxBytes: proposedUploadMaxBytes, Artifacts: []allowlist.Artifact{
		{Type: allowlist.ArtifactArchive, Name: "plan", Paths: []string{"plan/"}, ExpireIn: "1 year"},
		{Type: allowlist.ArtifactJUnit, Name: "junit.xml", Paths: []string{"reports/junit.xml"}, When: "always", ExpireIn: "1 year"},
		{Type: allowlist.ArtifactTerraform, Name: "tfplan.json", Paths: []string{"plan.json"}, When: "always", ExpireIn: "1 year"},
	}}
	if p := by["plan"]; !reflect.DeepEqual(p.Def.Uploads, want) || p.Def.Artifacts || len(p.Problems) > 0 {
		t.Fatalf("plan: uploads %+v artifacts %t problems %v", p.Def.Uploads, p.Def.Artifacts, p.Problems)
	}
	for _, n := range []string{"all", "dotenv"} {
		if j := by[n]; j.Def.Uploads != nil || !j.Def.Artifacts || !strings.Contains(strings.Join(j.Notes, " "), "writ uploads nothing") {
			t.Errorf("%s: uploads %+v artifacts %t notes %v", n, j.Def.Uploads, j.Def.Artifacts, j.Notes)
		}
	}
	if j := by["named"]; len(j.Problems) != 1 || !strings.Contains(j.Problems[0], "never expands") {
		t.Errorf("named: problems %v", j.Problems)
	}
}
