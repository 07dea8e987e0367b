package allowlist

// An entry's signed uploads: the files writ sends to GitLab's artifact API
// after the script, and nothing else.

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// Uploads is what an entry lets writ upload to GitLab after the script
// (definition.uploads). GitLab's payload must list exactly these
// artifacts; writ uploads the entry's, never the payload's.
type Uploads struct {
	// MaxBytes caps the total size of the files one upload stage sends
	// (before compression). Above it the upload fails and nothing is sent.
	MaxBytes int64
	// Artifacts are the job's artifacts in the order GitLab sends them:
	// the plain archive first, then the reports.
	Artifacts []Artifact
}

// ArtifactType is the kind of an uploaded artifact, as GitLab's
// artifact_type names it.
type ArtifactType string

// The artifact types writ uploads.
const (
	// ArtifactArchive is artifacts:paths, a zip archive anyone with access
	// to the job can download.
	ArtifactArchive ArtifactType = "archive"
	// ArtifactJUnit is artifacts:reports:junit, gzip, shown as test results.
	ArtifactJUnit ArtifactType = "junit"
	// ArtifactTerraform is artifacts:reports:terraform, gzip, a plan's JSON
	// summary shown in merge requests.
	ArtifactTerraform ArtifactType = "terraform"
)

// Artifact is one artifact of an entry's uploads, field for field the
// runner's artifacts item (spec.Artifact) without the options writ never
// uploads by (untracked, exclude).
type Artifact struct {
	Type ArtifactType
	// Name is artifacts:name ("" for none); GitLab names the file from it.
	Name string
	// Paths are globs relative to the build directory: path.Match syntax
	// per segment, and "**" as a whole segment for any number of
	// directories. A directory that matches is uploaded with its tree.
	Paths []string
	// When is "" (GitLab's default, on_success), on_success, on_failure or
	// always.
	When string
	// ExpireIn is artifacts:expire_in as GitLab parses it ("30 days"), or
	// "" for the instance's default.
	ExpireIn string
}

// Limits of an entry's uploads.
const (
	// MaxUploadBytes is the largest max_bytes an entry may state.
	MaxUploadBytes int64 = 4 << 30
	// MaxArtifacts bounds the artifacts of one entry.
	MaxArtifacts = 16
	// MaxUploadPaths bounds the paths of one artifact.
	MaxUploadPaths = 256
	// maxUploadPathBytes bounds one path or name.
	maxUploadPathBytes = 1024
)

// Format is the archive format GitLab expects for the artifact's type, as
// its artifact_format names it: zip for the archive, gzip for reports.
func (a *Artifact) Format() string {
	if a.Type == ArtifactArchive {
		return "zip"
	}
	return "gzip"
}

// UploadsAfter reports whether the artifact is uploaded after a job that
// succeeded (success) or failed.
func (a *Artifact) UploadsAfter(success bool) bool {
	switch a.When {
	case "always":
		return true
	case "on_failure":
		return !success
	}
	return success // "" and on_success
}

var artifactTypes = []string{string(ArtifactArchive), string(ArtifactJUnit), string(ArtifactTerraform)}

var artifactWhens = []string{"on_success", "on_failure", "always"}

// expireInRE is GitLab's duration text as writ lets it through: words and
// numbers ("1 year", "30 days", "never"), nothing a URL or shell treats
// specially.
var expireInRE = lazyre.New(`^[0-9A-Za-z]+( [0-9A-Za-z]+)*$`)

func (p *parser) uploads(n *yaml.Node) *Uploads {
	m, ok := p.keyed(n, "uploads", "max_bytes", "artifacts")
	if !ok {
		return nil
	}
	p.require(n, m, "uploads", "max_bytes", "artifacts")
	u := &Uploads{}
	if v := m.get("max_bytes"); v != nil {
		u.MaxBytes = p.maxBytes(v)
	}
	if v := m.get("artifacts"); v != nil {
		items, ok := p.list(v, "uploads.artifacts")
		switch {
		case !ok:
		case len(items) == 0:
			p.errorf(v, "uploads.artifacts is empty: list at least one artifact, or remove uploads")
		case len(items) > MaxArtifacts:
			p.errorf(v, "uploads.artifacts has %d artifacts; the limit is %d", len(items), MaxArtifacts)
		default:
			for _, it := range items {
				if a, ok := p.artifact(it); ok {
					u.Artifacts = append(u.Artifacts, a)
				}
			}
		}
	}
	return u
}

func (p *parser) maxBytes(n *yaml.Node) int64 {
	if n.Kind == yaml.AliasNode || n.Style&yaml.TaggedStyle != 0 {
		return 0
	}
	bad := func() int64 {
		what := describe(n)
		if n.Kind == yaml.ScalarNode {
			what = n.Value
		}
		p.errorf(n, "max_bytes must be a whole number of bytes from 1 to %d (4 GiB), not %s", MaxUploadBytes, what)
		return 0
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || !decimal.MatchString(n.Value) {
		return bad()
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil || v > MaxUploadBytes {
		return bad()
	}
	return v
}

func (p *parser) artifact(n *yaml.Node) (Artifact, bool) {
	m, ok := p.keyed(n, "an artifact", "type", "name", "paths", "when", "expire_in")
	if !ok {
		return Artifact{}, false
	}
	p.require(n, m, "an artifact", "type", "paths")
	var a Artifact
	if v := m.get("type"); v != nil {
		if s, ok := p.reqStr(v, "type"); ok {
			if !contains(artifactTypes, s) {
				p.errorf(v, "artifact type %q: write one of %s (writ uploads no other kind of report)", s, strings.Join(artifactTypes, ", "))
			}
			a.Type = ArtifactType(s)
		}
	}
	if v := m.get("name"); v != nil {
		if s, ok := p.reqStr(v, "name"); ok {
			if msg := checkArtifactName(s); msg != "" {
				p.errorf(v, "artifact name %q %s", s, msg)
			}
			a.Name = s
		}
	}
	if v := m.get("paths"); v != nil {
		paths, nodes, _ := p.strList(v, "paths", "path", true)
		if len(paths) > MaxUploadPaths {
			p.errorf(v, "paths has %d paths; the limit is %d: upload a directory instead", len(paths), MaxUploadPaths)
		}
		for i, s := range paths {
			if msg := CheckUploadPath(s); msg != "" {
				p.errorf(nodes[i], "path %q %s", s, msg)
			} else if wholeTree(s) {
				p.add(&p.warns, nodes[i].Line, nodes[i].Column, "path %q uploads every file of the build directory, including whatever a tool leaves there (credentials, state): name the files or directories to keep", s)
			}
		}
		a.Paths = paths
	}
	if v := m.get("when"); v != nil {
		if s, ok := p.reqStr(v, "when"); ok {
			if !contains(artifactWhens, s) {
				p.errorf(v, "when %q: write on_success, on_failure or always", s)
			}
			a.When = s
		}
	}
	if v := m.get("expire_in"); v != nil {
		if s, ok := p.reqStr(v, "expire_in"); ok {
			if len(s) > 64 || !expireInRE.MatchString(s) {
				p.errorf(v, "expire_in %q: write a duration as GitLab reads it, such as \"30 days\", \"1 year\" or \"never\" (letters, digits and single spaces)", s)
			}
			a.ExpireIn = s
		}
	}
	return a, true
}

// CheckUploadPath returns why s cannot be an upload path, or "". A path
// names files inside the build directory, whatever the job does: relative,
// no "." or ".." segment, no variable (writ never expands one in a path),
// and glob syntax that path.Match reads, with "**" only as a whole segment.
// One trailing "/" says the path names directories.
func CheckUploadPath(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > maxUploadPathBytes:
		return fmt.Sprintf("is longer than %d bytes", maxUploadPathBytes)
	case !utf8.ValidString(s) || strings.ContainsFunc(s, invisible):
		return "holds a control or invisible formatting character, or bytes that are not UTF-8"
	case strings.HasPrefix(s, "/"):
		return "is absolute: write it relative to the build directory"
	case strings.Contains(s, `\`):
		return `holds a backslash: write / between directories and no escapes`
	case strings.ContainsAny(s, "$"):
		return "holds $: writ never expands variables in upload paths; write the path itself"
	case strings.ContainsAny(s, "{}"):
		return "holds { or }: brace alternatives are not supported; list each path"
	}
	// One trailing slash names a directory, as GitLab users write it
	// (paths: [public/]); the entry states the path as GitLab sends it.
	for _, seg := range strings.Split(strings.TrimSuffix(s, "/"), "/") {
		switch {
		case seg == "":
			return "has an empty segment (//, a leading / or two trailing /): write each directory once"
		case seg == "." || seg == "..":
			return fmt.Sprintf("has a %q segment: write the path from the build directory down, without . or ..", seg)
		case seg == "**":
		case strings.Contains(seg, "**"):
			return `uses ** inside a segment: write ** as a whole segment (a/**/b)`
		default:
			if _, err := path.Match(seg, ""); err != nil {
				return fmt.Sprintf("has a malformed pattern in %q: %v", seg, err)
			}
		}
	}
	return ""
}

// wholeTree reports a path that matches every file at the top of the
// build directory, or below it.
func wholeTree(s string) bool {
	for _, seg := range strings.Split(s, "/") {
		if seg != "*" && seg != "**" {
			return false
		}
	}
	return true
}

// invisible reports control and formatting characters (bidi overrides,
// zero-width spaces): a path or name holding one reads as another.
func invisible(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }

// checkArtifactName returns why s cannot be an artifact name, or "".
// GitLab names the uploaded file after it.
func checkArtifactName(s string) string {
	switch {
	case len(s) > 255:
		return "is longer than 255 bytes"
	case !utf8.ValidString(s) || strings.ContainsFunc(s, invisible):
		return "holds a control or invisible formatting character, or bytes that are not UTF-8"
	case strings.ContainsAny(s, `/\$`):
		return "holds /, \\ or $: write a plain file name (writ never expands variables in it)"
	case s == "." || s == "..":
		return "is not a file name"
	}
	return ""
}

// uploads writes definition.uploads at indent.
func (w *writer) uploads(indent int, u *Uploads) {
	w.line(indent, "uploads:")
	w.line(indent+2, "max_bytes: "+strconv.FormatInt(u.MaxBytes, 10))
	if len(u.Artifacts) == 0 {
		w.line(indent+2, "artifacts: []")
		return
	}
	w.line(indent+2, "artifacts:")
	for _, a := range u.Artifacts {
		w.item(indent+4, "- type:", string(a.Type))
		if a.Name != "" {
			w.kv(indent+6, "name", a.Name)
		}
		w.list(indent+6, "paths", a.Paths, true)
		if a.When != "" {
			w.kv(indent+6, "when", a.When)
		}
		if a.ExpireIn != "" {
			w.kv(indent+6, "expire_in", a.ExpireIn)
		}
	}
}

// DescribeUploads is a one-line account of an entry's uploads, for diffs
// and reviews: "none" when it has none.
func DescribeUploads(u *Uploads) string {
	if u == nil {
		return "none"
	}
	var parts []string
	for _, a := range u.Artifacts {
		s := string(a.Type)
		if a.Name != "" {
			s += " " + strconv.Quote(a.Name)
		}
		s += " [" + strings.Join(a.Paths, ", ") + "]"
		if a.When != "" {
			s += " when " + a.When
		}
		if a.ExpireIn != "" {
			s += " expire_in " + a.ExpireIn
		}
		parts = append(parts, s)
	}
	return fmt.Sprintf("at most %d bytes: %s", u.MaxBytes, strings.Join(parts, "; "))
}
