package executor

// Admission of a job's artifacts against an entry's signed uploads: the
// payload's artifacts list must equal the entry's, item by item and field
// by field, byte for byte. What is uploaded is the entry's list; the
// comparison only makes GitLab's view agree with it, so a job GitLab would
// show as uploading other files is refused before it runs.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gitlab.com/writ-ci/writ/allowlist"
)

// Artifact is one item of the payload's artifacts list (the runner's
// spec.Artifact).
type Artifact struct {
	Name      string
	Untracked bool
	Paths     []string
	Exclude   []string
	When      string
	Type      string
	Format    string
	ExpireIn  string
}

var artifactKeys = map[string]bool{"name": true, "untracked": true, "paths": true, "exclude": true, "when": true,
	"artifact_type": true, "artifact_format": true, "expire_in": true}

func decodeArtifacts(raw json.RawMessage) ([]Artifact, error) {
	items, err := array(raw, "artifacts")
	if err != nil {
		return nil, err
	}
	out := make([]Artifact, 0, len(items))
	for i, item := range items {
		what := fmt.Sprintf("artifacts[%d]", i)
		m, err := jsonObject(item, what, artifactKeys)
		if err != nil {
			return nil, err
		}
		var a Artifact
		for _, f := range []struct {
			k string
			s *string
		}{{"name", &a.Name}, {"when", &a.When}, {"artifact_type", &a.Type}, {"artifact_format", &a.Format}, {"expire_in", &a.ExpireIn}} {
			if *f.s, err = str(m, f.k, what); err != nil {
				return nil, err
			}
		}
		if a.Untracked, err = boolean(m, "untracked", what); err != nil {
			return nil, err
		}
		if a.Paths, err = stringList(m, "paths", what); err != nil {
			return nil, err
		}
		if a.Exclude, err = stringList(m, "exclude", what); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

const uploadsHint = "make the job's artifacts: in .gitlab-ci.yml say exactly what the entry's uploads say (`writ allowlist entry` prints the entry for a job), or get the entry changed and approved"

// checkUploads requires the payload's artifacts to equal the entry's
// uploads.
func checkUploads(d *Decision, p *Payload, u *allowlist.Uploads) {
	if len(p.ArtifactList) != len(u.Artifacts) {
		d.fail(Failure{Check: CheckArtifacts,
			Message:  fmt.Sprintf("the job has %d artifact(s), the allowlist entry's uploads list %d", len(p.ArtifactList), len(u.Artifacts)),
			Expected: describeEntryArtifacts(u.Artifacts), Received: describePayloadArtifacts(p.ArtifactList),
			Hint: uploadsHint})
		return
	}
	for i := range u.Artifacts {
		checkArtifact(d, i, &u.Artifacts[i], &p.ArtifactList[i])
	}
}

func checkArtifact(d *Decision, i int, want *allowlist.Artifact, got *Artifact) {
	what := fmt.Sprintf("artifacts[%d]", i)
	if got.Untracked {
		d.fail(Failure{Check: CheckArtifacts, Message: what + " uploads untracked files (untracked: true); writ uploads only the paths the allowlist entry names",
			Hint: "remove untracked: true from the job's artifacts"})
	}
	if len(got.Exclude) > 0 {
		d.fail(Failure{Check: CheckArtifacts, Message: what + " has exclude:, which an allowlist entry's uploads cannot state",
			Received: allowlist.Visible(clip(strings.Join(got.Exclude, ", "))), Hint: "remove exclude: from the job's artifacts and name only the paths to upload"})
	}
	fields := []struct{ name, want, got string }{
		{"artifact_type", string(want.Type), got.Type},
		{"artifact_format", want.Format(), got.Format},
		{"name", want.Name, got.Name},
		{"when", want.When, got.When},
		{"expire_in", want.ExpireIn, got.ExpireIn},
	}
	for _, f := range fields {
		if f.want != f.got {
			d.fail(Failure{Check: CheckArtifacts, Message: fmt.Sprintf("%s %s differs from the allowlist entry's uploads", what, f.name),
				Expected: quoted(f.want), Received: quoted(clip(f.got)), Hint: uploadsHint})
		}
	}
	if !slices.Equal(want.Paths, got.Paths) {
		d.fail(Failure{Check: CheckArtifacts, Message: fmt.Sprintf("%s paths differ from the allowlist entry's uploads: writ uploads only the entry's paths", what),
			Expected: pathList(want.Paths), Received: pathList(got.Paths), Hint: uploadsHint})
	}
}

func quoted(s string) string { return allowlist.Visible(strconv.Quote(s)) }

func pathList(paths []string) string {
	q := make([]string, 0, len(paths))
	for i, p := range paths {
		if i == 20 {
			q = append(q, fmt.Sprintf("… (%d in all)", len(paths)))
			break
		}
		q = append(q, strconv.Quote(clip(p)))
	}
	return allowlist.Visible("[" + strings.Join(q, ", ") + "]")
}

func describeEntryArtifacts(as []allowlist.Artifact) string {
	var out []string
	for _, a := range as {
		out = append(out, string(a.Type)+" "+pathList(a.Paths))
	}
	return strings.Join(out, "; ")
}

func describePayloadArtifacts(as []Artifact) string {
	var out []string
	for i, a := range as {
		if i == 8 {
			out = append(out, fmt.Sprintf("… (%d in all)", len(as)))
			break
		}
		s := allowlist.Visible(clip(a.Type)) + " " + pathList(a.Paths)
		if a.Untracked {
			s += " untracked"
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

// checkUploadTarget refuses, before anything runs, a job whose entry
// uploads when this host's config names no GitLab to upload to: the deploy
// would run and its plan be lost.
func checkUploadTarget(d *Decision, e *allowlist.Entry, gitlabURL string) {
	if e.Definition.Uploads != nil && gitlabURL == "" {
		d.fail(Failure{Check: CheckArtifacts,
			Message: "the allowlist entry uploads artifacts, but this runner host's writ config names no GitLab to upload them to (gitlab.url)",
			Hint:    "ask the runner's owners to set gitlab.url in writ's config to the url of the runner's config.toml"})
	}
}

// DefaultUploadMaxBytes is the max_bytes of an entry that EntryFromPayload
// suggests for a job with artifacts: a starting point for the reviewer.
const DefaultUploadMaxBytes = 100 << 20

// uploadsFromPayload is the uploads an entry needs to admit the payload's
// artifacts, or nil when an entry's uploads cannot state them (untracked,
// exclude, or a type writ does not upload).
func uploadsFromPayload(p *Payload) *allowlist.Uploads {
	if len(p.ArtifactList) == 0 {
		return nil
	}
	u := &allowlist.Uploads{MaxBytes: DefaultUploadMaxBytes}
	for _, pa := range p.ArtifactList {
		a := allowlist.Artifact{Type: allowlist.ArtifactType(pa.Type), Name: pa.Name, Paths: slices.Clone(pa.Paths), When: pa.When, ExpireIn: pa.ExpireIn}
		switch a.Type {
		case allowlist.ArtifactArchive, allowlist.ArtifactJUnit, allowlist.ArtifactTerraform:
		default:
			return nil
		}
		if pa.Untracked || len(pa.Exclude) > 0 || pa.Format != a.Format() {
			return nil
		}
		u.Artifacts = append(u.Artifacts, a)
	}
	return u
}
