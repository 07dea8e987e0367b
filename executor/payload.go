package executor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// Payload is the part of GitLab Runner's job payload (the JOB_RESPONSE_FILE,
// the runner's JSON encoding of the job GitLab sent) that writ interprets.
//
// Every field comes from GitLab and is hostile: admission compares it with
// the allowlist and never executes or fetches anything it names.
type Payload struct {
	// ID is the job id, decimal digits only.
	ID string
	// Project is the project path ("group/app"), from job_info.project_full_path
	// or, when that is absent, the CI_PROJECT_PATH variable.
	Project string
	// JobName is job_info.name, the job's name in .gitlab-ci.yml.
	JobName string
	// Stage is job_info.stage (informational).
	Stage string
	// Ref and RefType are git_info.ref and git_info.ref_type ("branch" or "tag").
	Ref, RefType string
	// SHA is git_info.sha, the commit GitLab asks to build.
	SHA string
	// RepoURL is git_info.repo_url with any credentials removed. writ never
	// fetches from it; it is shown in refusals only.
	RepoURL string
	// Steps are the job's steps in payload order.
	Steps []Step
	// Variables are the job's variables in payload order.
	Variables []Variable
	// Image is the job's image (Name "" when the job has none).
	Image Image
	// Services are the job's services.
	Services []Image
	// Artifacts, Cache, Dependencies, Hooks, Secrets, Run and Credentials
	// count the entries of those payload lists (for secrets: keys; for run:
	// steps).
	Artifacts, Cache, Dependencies, Hooks, Secrets, Run, Credentials int
	// ArtifactList is the payload's artifacts list item by item, compared
	// with an entry's uploads (see checkUploads).
	ArtifactList []Artifact
	// JobToken is the job's token, which authenticates writ's uploads to
	// the configured GitLab (never to a URL from the payload). It is never
	// recorded or shown.
	JobToken string
	// Digest is the hex SHA-256 of the payload bytes.
	Digest string
}

// Step is one entry of the payload's steps.
type Step struct {
	Name         string
	Script       []string
	Timeout      int64
	When         string
	AllowFailure bool
}

// Variable is one job variable as GitLab sent it.
type Variable struct {
	Key    string
	Value  string
	Public bool
	File   bool
	Masked bool
	Raw    bool
}

// Image is an image or service reference from the payload.
type Image struct {
	Name string
	// Other lists the names of the image's other fields that are set
	// (entrypoint, command, alias, variables, …), sorted. writ refuses them:
	// an allowlist entry pins an image by name only.
	Other []string
}

// PayloadError says why a payload cannot be read. A payload written by a
// real GitLab Runner never causes one.
type PayloadError struct{ Msg string }

func (e *PayloadError) Error() string { return "job payload: " + e.Msg }

func payloadErr(format string, a ...any) error {
	return &PayloadError{Msg: fmt.Sprintf(format, a...)}
}

// maxJSONDepth bounds nesting; the runner's payload is at most a few levels
// deep (secrets carry the deepest objects).
const maxJSONDepth = 32

// topLevelKeys are the keys of the runner's encoding of a job (spec.Job in
// gitlab-runner's common/spec). Any other key is refused: writ cannot say
// what a field it does not know would make the runner do.
var topLevelKeys = map[string]bool{
	"id": true, "token": true, "allow_git_fetch": true, "job_info": true,
	"git_info": true, "runner_info": true, "inputs": true, "variables": true,
	"steps": true, "image": true, "services": true, "artifacts": true,
	"cache": true, "credentials": true, "dependencies": true, "features": true,
	"secrets": true, "hooks": true, "run": true, "policy_options": true,
	"suspend_options": true,
}

var (
	jobIDPattern = lazyre.New(`^[1-9][0-9]{0,18}$`)
	shaPattern   = lazyre.New(`^[0-9a-f]{40}$`)
)

// DecodePayload decodes a job payload strictly: valid UTF-8, one JSON
// object, no duplicate key at any level, no unknown top-level key, every
// interpreted object with only the keys the runner writes. Callers bound the
// size before (ReadPayload does).
func DecodePayload(data []byte) (*Payload, error) {
	if err := checkJSON(data); err != nil {
		return nil, err
	}
	top, err := jsonObject(data, "the payload", nil)
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(top) {
		if !topLevelKeys[k] {
			return nil, payloadErr("unknown top-level key %q: writ does not know what it would make the runner do", k)
		}
	}
	sum := sha256.Sum256(data)
	p := &Payload{Digest: hex.EncodeToString(sum[:])}

	idRaw, ok := top["id"]
	if !ok {
		return nil, payloadErr("no job id")
	}
	// The raw token text, not a decoded value: a string "4242" or 4.242e3
	// would decode to a number too.
	id := string(bytes.TrimSpace(idRaw))
	if !jobIDPattern.MatchString(id) {
		return nil, payloadErr("job id %s is not a positive decimal integer", clip(id))
	}
	p.ID = id

	// job_info changes with runner versions (fields are added for
	// telemetry), so only the fields writ reads are decoded; the others
	// cannot change what writ runs.
	jobInfo, err := jsonObject(top["job_info"], "job_info", nil)
	if err != nil {
		return nil, err
	}
	if p.JobName, err = str(jobInfo, "name", "job_info"); err != nil {
		return nil, err
	}
	if p.Stage, err = str(jobInfo, "stage", "job_info"); err != nil {
		return nil, err
	}
	if p.Project, err = str(jobInfo, "project_full_path", "job_info"); err != nil {
		return nil, err
	}

	gitInfo, err := jsonObject(top["git_info"], "git_info", nil)
	if err != nil {
		return nil, err
	}
	if p.Ref, err = str(gitInfo, "ref", "git_info"); err != nil {
		return nil, err
	}
	if p.RefType, err = str(gitInfo, "ref_type", "git_info"); err != nil {
		return nil, err
	}
	if p.SHA, err = str(gitInfo, "sha", "git_info"); err != nil {
		return nil, err
	}
	repoURL, err := str(gitInfo, "repo_url", "git_info")
	if err != nil {
		return nil, err
	}
	p.RepoURL = cleanURL(repoURL)

	if p.Variables, err = decodeVariables(top["variables"]); err != nil {
		return nil, err
	}
	if p.Project == "" {
		// Older GitLab versions send no project_full_path; the predefined
		// variable carries the same value.
		for _, v := range p.Variables {
			if v.Key == "CI_PROJECT_PATH" {
				p.Project = v.Value
			}
		}
	}
	if p.Steps, err = decodeSteps(top["steps"]); err != nil {
		return nil, err
	}
	if raw, ok := top["image"]; ok {
		if p.Image, err = decodeImage(raw, "image"); err != nil {
			return nil, err
		}
	}
	if p.Services, err = decodeImages(top["services"]); err != nil {
		return nil, err
	}
	counts := []struct {
		key string
		n   *int
	}{
		{"artifacts", &p.Artifacts}, {"cache", &p.Cache}, {"dependencies", &p.Dependencies},
		{"hooks", &p.Hooks}, {"run", &p.Run}, {"credentials", &p.Credentials},
	}
	for _, c := range counts {
		if *c.n, err = count(top[c.key], c.key); err != nil {
			return nil, err
		}
	}
	if p.ArtifactList, err = decodeArtifacts(top["artifacts"]); err != nil {
		return nil, err
	}
	if p.JobToken, err = str(top, "token", "the payload"); err != nil {
		return nil, err
	}
	secrets, err := jsonObject(top["secrets"], "secrets", nil)
	if err != nil {
		return nil, err
	}
	p.Secrets = len(secrets)
	return p, nil
}

// checkJSON checks that data is one JSON object in valid UTF-8 with no
// duplicate key at any level: encoding/json silently keeps the last of two
// equal keys, so a payload could show one value to a reviewer's tool and
// another to writ. Here any duplicate key is an error.
//
// json.Valid checks the syntax first, so the scan below only has to follow
// the structure of text already known to be well formed; it is linear and
// allocates only for keys.
func checkJSON(data []byte) error {
	if !utf8.Valid(data) {
		return payloadErr("not valid UTF-8")
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		if err == nil {
			err = errors.New("invalid")
		}
		return payloadErr("not valid JSON: %v", err)
	}
	type frame struct {
		obj       bool
		expectKey bool
		keys      map[string]struct{}
	}
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].expectKey = true
		}
	}
	first := true
	for i := 0; i < len(data); {
		c := data[i]
		switch c {
		case ' ', '\t', '\n', '\r', ',', ':':
			i++
			continue
		}
		if first {
			if c != '{' {
				return payloadErr("not a JSON object")
			}
			first = false
		}
		switch c {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return payloadErr("nested deeper than %d levels", maxJSONDepth)
			}
			stack = append(stack, &frame{obj: c == '{', expectKey: c == '{'})
			i++
		case '}', ']':
			stack = stack[:len(stack)-1]
			valueDone()
			i++
		case '"':
			end, escaped := stringEnd(data, i)
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].expectKey {
				top := stack[n-1]
				key := string(data[i+1 : end])
				if escaped {
					if err := json.Unmarshal(data[i:end+1], &key); err != nil {
						return payloadErr("not valid JSON: %v", err)
					}
				}
				if top.keys == nil {
					top.keys = map[string]struct{}{}
				}
				if _, dup := top.keys[key]; dup {
					return payloadErr("duplicate key %q: JSON readers disagree on which value counts, so writ refuses both", clip(key))
				}
				top.keys[key] = struct{}{}
				top.expectKey = false
			} else {
				valueDone()
			}
			i = end + 1
		default: // a number, true, false or null
			for i < len(data) && !isDelimiter(data[i]) {
				i++
			}
			valueDone()
		}
	}
	return nil
}

// stringEnd returns the index of the quote closing the string that opens
// at data[start], and whether the string holds escapes.
func stringEnd(data []byte, start int) (int, bool) {
	escaped := false
	for i := start + 1; i < len(data); i++ {
		switch data[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i, escaped
		}
	}
	return len(data) - 1, escaped // unreachable for valid JSON
}

func isDelimiter(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\n', '\r', ':':
		return true
	}
	return false
}

// jsonObject decodes raw (absent or null: empty) as a JSON object. With allowed
// non-nil, every key must be in it.
func jsonObject(raw json.RawMessage, what string, allowed map[string]bool) (map[string]json.RawMessage, error) {
	if isNull(raw) {
		return map[string]json.RawMessage{}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, payloadErr("%s is not an object", what)
	}
	if allowed != nil {
		for _, k := range sortedKeys(m) {
			if !allowed[k] {
				return nil, payloadErr("%s has an unknown key %q", what, clip(k))
			}
		}
	}
	return m, nil
}

// array decodes raw (absent or null: empty) as a JSON array.
func array(raw json.RawMessage, what string) ([]json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	var a []json.RawMessage
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, payloadErr("%s is not an array", what)
	}
	return a, nil
}

func count(raw json.RawMessage, what string) (int, error) {
	a, err := array(raw, what)
	return len(a), err
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

// str reads an optional string field: absent or null is "".
func str(m map[string]json.RawMessage, key, what string) (string, error) {
	raw, ok := m[key]
	if !ok || isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", payloadErr("%s.%s is not a string", what, key)
	}
	return s, nil
}

func boolean(m map[string]json.RawMessage, key, what string) (bool, error) {
	raw, ok := m[key]
	if !ok || isNull(raw) {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, payloadErr("%s.%s is not a boolean", what, key)
	}
	return b, nil
}

func integer(m map[string]json.RawMessage, key, what string) (int64, error) {
	raw, ok := m[key]
	if !ok || isNull(raw) {
		return 0, nil
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, payloadErr("%s.%s is not an integer", what, key)
	}
	return n, nil
}

func stringList(m map[string]json.RawMessage, key, what string) ([]string, error) {
	raw, ok := m[key]
	if !ok || isNull(raw) {
		return nil, nil
	}
	var s []string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, payloadErr("%s.%s is not a list of strings", what, key)
	}
	return s, nil
}

var variableKeys = map[string]bool{"key": true, "value": true, "public": true, "file": true, "masked": true, "raw": true}

func decodeVariables(raw json.RawMessage) ([]Variable, error) {
	items, err := array(raw, "variables")
	if err != nil {
		return nil, err
	}
	vars := make([]Variable, 0, len(items))
	for i, item := range items {
		what := fmt.Sprintf("variables[%d]", i)
		m, err := jsonObject(item, what, variableKeys)
		if err != nil {
			return nil, err
		}
		if _, ok := m["key"]; !ok {
			return nil, payloadErr("%s has no key", what)
		}
		var v Variable
		if v.Key, err = str(m, "key", what); err != nil {
			return nil, err
		}
		if v.Value, err = str(m, "value", what); err != nil {
			return nil, err
		}
		for _, f := range []struct {
			k string
			b *bool
		}{{"public", &v.Public}, {"file", &v.File}, {"masked", &v.Masked}, {"raw", &v.Raw}} {
			if *f.b, err = boolean(m, f.k, what); err != nil {
				return nil, err
			}
		}
		vars = append(vars, v)
	}
	return vars, nil
}

var stepKeys = map[string]bool{"name": true, "script": true, "timeout": true, "when": true, "allow_failure": true}

func decodeSteps(raw json.RawMessage) ([]Step, error) {
	items, err := array(raw, "steps")
	if err != nil {
		return nil, err
	}
	steps := make([]Step, 0, len(items))
	for i, item := range items {
		what := fmt.Sprintf("steps[%d]", i)
		m, err := jsonObject(item, what, stepKeys)
		if err != nil {
			return nil, err
		}
		var s Step
		if s.Name, err = str(m, "name", what); err != nil {
			return nil, err
		}
		if s.Script, err = stringList(m, "script", what); err != nil {
			return nil, err
		}
		if s.Timeout, err = integer(m, "timeout", what); err != nil {
			return nil, err
		}
		if s.When, err = str(m, "when", what); err != nil {
			return nil, err
		}
		if s.AllowFailure, err = boolean(m, "allow_failure", what); err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	return steps, nil
}

func decodeImages(raw json.RawMessage) ([]Image, error) {
	items, err := array(raw, "services")
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(items))
	for i, item := range items {
		img, err := decodeImage(item, fmt.Sprintf("services[%d]", i))
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// decodeImage reads the name and notes every other field that is not empty.
// The runner always writes executor_opts with empty strings, so "empty" is
// judged recursively rather than by key presence.
func decodeImage(raw json.RawMessage, what string) (Image, error) {
	m, err := jsonObject(raw, what, nil)
	if err != nil {
		return Image{}, err
	}
	var img Image
	if img.Name, err = str(m, "name", what); err != nil {
		return Image{}, err
	}
	for _, k := range sortedKeys(m) {
		if k == "name" {
			continue
		}
		var v any
		if err := json.Unmarshal(m[k], &v); err != nil {
			return Image{}, payloadErr("%s.%s is not valid JSON", what, clip(k))
		}
		if !emptyJSON(v) {
			img.Other = append(img.Other, k)
		}
	}
	return img, nil
}

// emptyJSON reports whether v holds no information: null, "", 0, false, an
// empty list, or an object whose values are all empty.
func emptyJSON(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case bool:
		return !t
	case float64:
		return t == 0
	case []any:
		return len(t) == 0
	case map[string]any:
		for _, e := range t {
			if !emptyJSON(e) {
				return false
			}
		}
		return true
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// clip bounds a hostile string quoted in a message.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// cleanURL removes credentials (the runner puts the job token in repo_url)
// so the URL can be shown.
func cleanURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if i := strings.LastIndex(s, "@"); i >= 0 && strings.Contains(s[:i], "://") {
			return s[:strings.Index(s, "://")+3] + s[i+1:]
		}
		return s
	}
	u.User = nil
	return u.String()
}

var errNoPayload = errors.New("JOB_RESPONSE_FILE is not set: run writ from GitLab Runner's custom executor (see docs/install.md)")

// leadingIDBytes bounds how much of a payload leadingJobID reads.
const leadingIDBytes = 256

// leadingJobID returns the job id of a payload too large to decode, when
// the payload starts as GitLab Runner writes one, with the id as its first
// key ({"id":4242,…), and "" otherwise. It reads at most leadingIDBytes and
// serves only to name the job in the refusal and the audit log: nothing of
// the job runs and no state is kept for it.
func leadingJobID(r io.Reader) string {
	dec := json.NewDecoder(io.LimitReader(r, leadingIDBytes))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	if tok, err := dec.Token(); err != nil || tok != "id" {
		return ""
	}
	tok, err := dec.Token()
	if err != nil {
		return ""
	}
	n, ok := tok.(json.Number)
	if !ok || !jobIDPattern.MatchString(string(n)) {
		return ""
	}
	return string(n)
}
