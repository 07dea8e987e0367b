package companion

import (
	"fmt"
	"sort"
	"strings"

	"gitlab.com/writ-ci/writ/allowlist"
)

// proposedUploadMaxBytes is the max_bytes a proposal suggests: a reviewer
// states the real cap.
const proposedUploadMaxBytes = 100 << 20

// reportNames are the names GitLab gives report artifacts in the job
// payload (Ci::JobArtifact::DEFAULT_FILE_NAMES, which has changed across
// GitLab versions: a proposal says so in a note).
var reportNames = map[string]string{"junit": "junit.xml", "terraform": "tfplan.json"}

// artifactsFill sets the definition's uploads from a job's artifacts:
// (the merged YAML), as GitLab turns it into the payload's artifacts
// list: the archive first (paths, name, when, expire_in), then each
// report, named by GitLab, when: always, with the archive's expire_in.
// What an entry's uploads cannot state (untracked, exclude, other
// reports) falls back to artifacts: true, which uploads nothing.
func (j *ciJob) artifactsFill(v any) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return
	}
	u, why := uploadsFromCI(m)
	if u == nil {
		j.Def.Artifacts = true
		j.Notes = append(j.Notes, "artifacts: "+why+"; the entry says artifacts: true, so writ uploads nothing")
		return
	}
	for _, a := range u.Artifacts {
		if strings.Contains(a.Name, "$") {
			j.Problems = append(j.Problems, fmt.Sprintf("artifacts:name %q uses a variable, which writ never expands: write a literal name", sanitize(a.Name, 80)))
		}
		for _, p := range a.Paths {
			if msg := allowlist.CheckUploadPath(p); msg != "" {
				j.Problems = append(j.Problems, fmt.Sprintf("artifact path %q %s", sanitize(p, 80), msg))
			}
		}
	}
	j.Def.Uploads = u
	note := fmt.Sprintf("uploads: max_bytes is a suggested %d MiB: state the real cap", proposedUploadMaxBytes>>20)
	if len(u.Artifacts) > 1 && u.Artifacts[len(u.Artifacts)-1].Type != allowlist.ArtifactArchive {
		note += "; report names and order are what current GitLab sends: `writ check` on a job's payload confirms them"
	}
	j.Notes = append(j.Notes, note)
}

func uploadsFromCI(m map[string]any) (*allowlist.Uploads, string) {
	if b, _ := m["untracked"].(bool); b {
		return nil, "untracked: true uploads files no entry can name"
	}
	if _, ok := m["exclude"]; ok {
		return nil, "exclude: cannot be stated in an entry's uploads"
	}
	u := &allowlist.Uploads{MaxBytes: proposedUploadMaxBytes}
	expire := ciString(m["expire_in"])
	if paths := ciStrings(m["paths"]); len(paths) > 0 {
		u.Artifacts = append(u.Artifacts, allowlist.Artifact{Type: allowlist.ArtifactArchive,
			Name: ciString(m["name"]), Paths: paths, When: ciString(m["when"]), ExpireIn: expire})
	}
	reports, _ := m["reports"].(map[string]any)
	kinds := make([]string, 0, len(reports))
	for k := range reports {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		name, ok := reportNames[k]
		if !ok {
			return nil, fmt.Sprintf("reports:%s is not a report writ uploads (only junit and terraform)", sanitize(k, 40))
		}
		u.Artifacts = append(u.Artifacts, allowlist.Artifact{Type: allowlist.ArtifactType(k), Name: name,
			Paths: ciStrings(reports[k]), When: "always", ExpireIn: expire})
	}
	if len(u.Artifacts) == 0 {
		return nil, "no paths and no reports"
	}
	return u, ""
}

func ciString(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// ciStrings reads a path or a list of paths.
func ciStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, ciString(e))
		}
		return out
	}
	return nil
}
