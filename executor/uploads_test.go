package executor

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// received is one artifacts upload the fake GitLab got.
type received struct {
	Path, Token, Format, Type, ExpireIn, Filename string
	Data                                          []byte
}

// fakeGitLab records POST /api/v4/jobs/:id/artifacts as GitLab's API
// documents it (multipart field "file"; artifact_format, artifact_type and
// expire_in in the query; the job token in JOB-TOKEN) and answers 201.
type fakeGitLab struct {
	*httptest.Server
	mu  sync.Mutex
	got []received
}

func newFakeGitLab(t *testing.T) *fakeGitLab {
	g := &fakeGitLab{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := received{Path: r.URL.Path, Token: r.Header.Get("JOB-TOKEN"), Format: r.URL.Query().Get("artifact_format"),
			Type: r.URL.Query().Get("artifact_type"), ExpireIn: r.URL.Query().Get("expire_in")}
		_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if r.Method != http.MethodPost || err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err != nil {
				break
			}
			if part.FormName() == "file" {
				rec.Filename = part.FileName()
				rec.Data, _ = io.ReadAll(part)
			}
		}
		g.mu.Lock()
		g.got = append(g.got, rec)
		g.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "{}")
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *fakeGitLab) uploads() []received {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.got)
}

// uploadsEnv is an environment whose entry uploads out/ as a zip archive
// and report.xml as a JUnit report, with GitLab at g.
func uploadsEnv(t *testing.T, g *fakeGitLab, script []string, uploads string) *env {
	e := newEnv(t)
	e.entry.Script = script
	e.entry.Extra = strings.Split(strings.TrimRight(uploads, "\n"), "\n")
	e.configTail = "[gitlab]\nurl = " + q(g.URL) + "\n"
	e.write()
	return e
}

const twoUploads = `uploads:
  max_bytes: 4096
  artifacts:
    - type: archive
      name: plan
      paths: [out]
      expire_in: 1 year
    - type: junit
      paths: [report.xml]
      when: always`

// payloadArtifacts is GitLab's artifacts list for twoUploads.
func payloadArtifacts() []any {
	return []any{
		map[string]any{"name": "plan", "untracked": false, "paths": []any{"out"}, "when": "", "artifact_type": "archive", "artifact_format": "zip", "expire_in": "1 year"},
		map[string]any{"name": "", "untracked": false, "paths": []any{"report.xml"}, "when": "always", "artifact_type": "junit", "artifact_format": "gzip", "expire_in": ""},
	}
}

var uploadScript = []string{
	"mkdir -p out/sub && printf plan > out/plan.txt && printf deep > out/sub/deep.txt",
	"printf '<testsuite/>' > report.xml",
	"printf secret > .credentials",
}

func TestUploadsSendExactlyTheEntrysFiles(t *testing.T) {
	t.Parallel()
	g := newFakeGitLab(t)
	e := uploadsEnv(t, g, uploadScript, twoUploads)
	j := e.newJob(e.payload(5001, e.head, withScript(uploadScript...), withKey("artifacts", payloadArtifacts())))
	r := j.runAll()
	if r.prepare != 0 || r.build != 0 {
		t.Fatalf("prepare %d, build %d\n%s", r.prepare, r.build, j.log.String())
	}
	got := g.uploads()
	if len(got) != 2 {
		t.Fatalf("%d uploads, want 2\n%s", len(got), j.log.String())
	}
	mustContain(t, j.log.String(), "writ: uploaded archive artifact plan.zip (2 file(s)", "writ:   out/plan.txt (4 bytes, sha256 ",
		"writ: uploaded junit artifact artifacts.gz (1 file(s)", "writ:   report.xml (12 bytes, sha256 ")
	zipUp, junit := got[0], got[1]
	if zipUp.Path != "/api/v4/jobs/5001/artifacts" || zipUp.Token != "glcbt-64_test-job-token" || zipUp.Format != "zip" ||
		zipUp.Type != "archive" || zipUp.ExpireIn != "1 year" || zipUp.Filename != "plan.zip" {
		t.Errorf("archive upload %+v", zipUp)
	}
	if files := zipFiles(t, zipUp.Data); !mapsEqual(files, map[string]string{"out/plan.txt": "plan", "out/sub/deep.txt": "deep"}) {
		t.Errorf("archive holds %v", files)
	}
	if junit.Format != "gzip" || junit.Type != "junit" || junit.ExpireIn != "" || junit.Filename != "artifacts.gz" {
		t.Errorf("junit upload %+v", junit)
	}
	zr, err := gzip.NewReader(bytes.NewReader(junit.Data))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(zr)
	if string(body) != "<testsuite/>" || zr.Name != "report.xml" {
		t.Errorf("junit report %q named %q", body, zr.Name)
	}
	var upload map[string]any
	for _, rec := range e.auditRecords() {
		if rec.Event == EventUpload && rec.Job == "5001" {
			upload = rec.Fields
		}
	}
	if upload == nil || upload["status"] != "uploaded" {
		t.Fatalf("audit upload record %v", upload)
	}
	text := strings.Join(strings.Fields(jsonText(t, upload)), " ")
	for _, want := range []string{`"path":"out/plan.txt"`, `"size":4`, "sha256", `"path":"report.xml"`, `"http_status":201`} {
		if !strings.Contains(text, want) {
			t.Errorf("audit upload record lacks %s: %s", want, text)
		}
	}
	if strings.Contains(text, ".credentials") {
		t.Errorf("the audit record names a file that was not to be uploaded: %s", text)
	}
}

func TestUploadsRefusedAtAdmission(t *testing.T) {
	t.Parallel()
	g := newFakeGitLab(t)
	e := uploadsEnv(t, g, uploadScript, twoUploads)
	with := func(edit func([]any) []any) func(map[string]any) {
		return withKey("artifacts", edit(payloadArtifacts()))
	}
	for name, tc := range map[string]struct {
		mod  func(map[string]any)
		want string
	}{
		"extra path": {with(func(a []any) []any {
			a[0].(map[string]any)["paths"] = []any{"out", ".credentials"}
			return a
		}), `artifacts[0] paths differ from the allowlist entry's uploads`},
		"dotdot path": {with(func(a []any) []any {
			a[0].(map[string]any)["paths"] = []any{"out/../.credentials"}
			return a
		}), `artifacts[0] paths differ`},
		"extra artifact": {with(func(a []any) []any {
			return append(a, map[string]any{"untracked": true, "paths": []any{}, "artifact_type": "archive", "artifact_format": "zip"})
		}), "the job has 3 artifact(s), the allowlist entry's uploads list 2"},
		"untracked": {with(func(a []any) []any {
			a[0].(map[string]any)["untracked"] = true
			return a
		}), "uploads untracked files"},
		"other format": {with(func(a []any) []any {
			a[1].(map[string]any)["artifact_format"] = "raw"
			return a
		}), "artifacts[1] artifact_format differs"},
		"no artifacts": {withKey("artifacts", nil), "the job has 0 artifact(s)"},
	} {
		t.Run(name, func(t *testing.T) {
			j := e.newJob(e.payload(5100+len(name), e.head, withScript(uploadScript...), tc.mod))
			out, code := j.stage("prepare")
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("prepare: exit %d, want 1 and %q:\n%s", code, tc.want, out)
			}
			j.stage("cleanup")
		})
	}
	if n := len(g.uploads()); n != 0 {
		t.Fatalf("%d uploads from refused jobs", n)
	}
}

// TestUploadsNeverLeaveTheBuildDirectory: whatever the job leaves at an
// upload path, writ (root) uploads nothing from outside the build
// directory, fails the job saying why, and sends nothing at all.
func TestUploadsNeverLeaveTheBuildDirectory(t *testing.T) {
	t.Parallel()
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "report.xml")
	if err := os.WriteFile(secret, []byte("host-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	const dirUpload = "uploads:\n  max_bytes: 4096\n  artifacts:\n    - type: junit\n      paths: [reports/report.xml]\n      when: always"
	dirArtifacts := []any{map[string]any{"paths": []any{"reports/report.xml"}, "when": "always", "artifact_type": "junit", "artifact_format": "gzip"}}
	const fileUpload = "uploads:\n  max_bytes: 4096\n  artifacts:\n    - type: archive\n      paths: [report.xml]"
	fileArtifacts := []any{map[string]any{"paths": []any{"report.xml"}, "artifact_type": "archive", "artifact_format": "zip"}}
	for name, tc := range map[string]struct {
		script    []string
		uploads   string
		artifacts []any
		want      string
	}{
		"directory symlink":   {[]string{"ln -s " + secretDir + " reports"}, dirUpload, dirArtifacts, "reports is a symbolic link"},
		"file symlink":        {[]string{"ln -s " + secret + " report.xml"}, fileUpload, fileArtifacts, "report.xml is a symbolic link"},
		"relative symlink":    {[]string{"ln -s ../../../../../../../../../.." + secret + " report.xml"}, fileUpload, fileArtifacts, "report.xml is a symbolic link"},
		"fifo":                {[]string{"mkfifo report.xml"}, fileUpload, fileArtifacts, "report.xml is not a regular file"},
		"larger than the cap": {[]string{"head -c 5000 /dev/zero > report.xml"}, fileUpload, fileArtifacts, "larger than the entry's max_bytes"},
		// The first artifact (out/) is fine; only the second is refused,
		// and the first must not have been sent either.
		"second artifact": {[]string{"mkdir out && printf plan > out/plan.txt && ln -s " + secret + " report.xml"}, twoUploads, payloadArtifacts(), "report.xml is a symbolic link"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g := newFakeGitLab(t)
			e := uploadsEnv(t, g, tc.script, tc.uploads)
			j := e.newJob(e.payload(5200, e.head, withScript(tc.script...), withKey("artifacts", tc.artifacts)))
			j.runAll()
			log := j.log.String()
			if !strings.Contains(log, "upload refused, nothing was uploaded") || !strings.Contains(log, tc.want) {
				t.Errorf("the job log does not say %q:\n%s", tc.want, log)
			}
			if n := len(g.uploads()); n != 0 {
				t.Errorf("%d uploads", n)
			}
			found := false
			for _, rec := range e.auditRecords() {
				if rec.Event == EventUpload && rec.Fields["status"] == "refused" && strings.Contains(rec.Reason, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no refused upload in the audit log")
			}
		})
	}
}

func TestUploadsWithoutGitLabURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.Script = uploadScript
	e.entry.Extra = strings.Split(twoUploads, "\n")
	e.write()
	j := e.newJob(e.payload(5300, e.head, withScript(uploadScript...), withKey("artifacts", payloadArtifacts())))
	if r := j.runAll(); r.prepare != 1 || !strings.Contains(j.log.String(), "names no GitLab to upload them to (gitlab.url)") {
		t.Fatalf("prepare %d, want a refusal naming gitlab.url:\n%s", r.prepare, j.log.String())
	}
	j.assertNothingRan()
}

func TestCollectMatches(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{"a.xml", "b.txt", "d/x.xml", "d/e/y.xml", "d/e/z.txt", ".hidden.xml"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for pattern, want := range map[string][]string{
		"*.xml":      {".hidden.xml", "a.xml"},
		"**/*.xml":   {".hidden.xml", "a.xml", "d/e/y.xml", "d/x.xml"},
		"d":          {"d/e/y.xml", "d/e/z.txt", "d/x.xml"},
		"d/**/z.txt": {"d/e/z.txt"},
		"d/e/*":      {"d/e/y.xml", "d/e/z.txt"},
		"missing/a":  nil,
		"a.xml/b":    nil,
		"[ab].*":     {"a.xml", "b.txt"},
		"d/?/y.xml":  {"d/e/y.xml"},
		"d/e/y.xml":  {"d/e/y.xml"},
		"d/**":       {"d/e/y.xml", "d/e/z.txt", "d/x.xml"},
		"d/":         {"d/e/y.xml", "d/e/z.txt", "d/x.xml"},
		"a.xml/":     nil,
		"d/*/":       {"d/e/y.xml", "d/e/z.txt"},
	} {
		tree, err := openBuildTree(dir, -1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tree.match(pattern); err != nil {
			t.Errorf("%s: %v", pattern, err)
		}
		got := tree.files
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s matched %q, want %q", pattern, got, want)
		}
		tree.Close()
	}
}

func TestCollectRefusesOtherOwners(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file away")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "plan")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	tree, err := openBuildTree(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	for _, bad := range []string{"../x", "/etc/passwd", "a/../../x"} {
		if _, err := tree.match(bad); err == nil || !strings.Contains(err.Error(), "upload path") {
			t.Errorf("match(%q): %v", bad, err)
		}
	}
	if _, err := tree.match("plan"); err == nil || !strings.Contains(err.Error(), "owned by uid 4242, not by the job") {
		t.Fatalf("err = %v", err)
	}
	// The root itself must not be a link either.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := openBuildTree(link, -1); !errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, syscall.ELOOP) {
		t.Fatalf("opened a linked build directory: %v", err)
	}
}

func zipFiles(t *testing.T, data []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		out[f.Name] = string(b)
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEntryFromPayloadUploads: the suggested entry for a job with
// artifacts lists them as uploads that admit the same payload, unless an
// entry cannot state them (untracked), where it falls back to artifacts:
// true.
func TestEntryFromPayloadUploads(t *testing.T) {
	t.Parallel()
	p, err := DecodePayload(makePayload(t, 7, strings.Repeat("a", 40), []string{"true"}, withKey("artifacts", payloadArtifacts())))
	if err != nil {
		t.Fatal(err)
	}
	e := EntryFromPayload(p, "prod")
	u := e.Definition.Uploads
	if u == nil || e.Definition.Artifacts || u.MaxBytes != DefaultUploadMaxBytes || len(u.Artifacts) != 2 ||
		u.Artifacts[0].Name != "plan" || u.Artifacts[0].ExpireIn != "1 year" || u.Artifacts[1].When != "always" {
		t.Fatalf("suggested uploads %+v", u)
	}
	d := &Decision{}
	checkUploads(d, p, u)
	if len(d.Failures) > 0 {
		t.Fatalf("the suggested uploads refuse the payload they came from: %+v", d.Failures)
	}
	untracked := payloadArtifacts()
	untracked[0].(map[string]any)["untracked"] = true
	p, err = DecodePayload(makePayload(t, 7, strings.Repeat("a", 40), []string{"true"}, withKey("artifacts", untracked)))
	if err != nil {
		t.Fatal(err)
	}
	if e := EntryFromPayload(p, "prod"); e.Definition.Uploads != nil || !e.Definition.Artifacts {
		t.Fatalf("untracked artifacts suggested as %+v, artifacts %t", e.Definition.Uploads, e.Definition.Artifacts)
	}
}

// TestUploadsFollowTheOutcome: after a failed script only the artifacts
// for failure (on_failure, always) are uploaded.
func TestUploadsFollowTheOutcome(t *testing.T) {
	t.Parallel()
	g := newFakeGitLab(t)
	script := []string{"printf x > a.txt && printf y > b.txt && printf z > c.txt", "exit 3"}
	const uploads = "uploads:\n  max_bytes: 100\n  artifacts:\n" +
		"    - {type: archive, name: ok, paths: [a.txt], when: on_success}\n" +
		"    - {type: archive, name: bad, paths: [b.txt], when: on_failure}\n" +
		"    - {type: junit, paths: [c.txt], when: always}"
	e := uploadsEnv(t, g, script, uploads)
	arts := []any{
		map[string]any{"name": "ok", "paths": []any{"a.txt"}, "when": "on_success", "artifact_type": "archive", "artifact_format": "zip"},
		map[string]any{"name": "bad", "paths": []any{"b.txt"}, "when": "on_failure", "artifact_type": "archive", "artifact_format": "zip"},
		map[string]any{"paths": []any{"c.txt"}, "when": "always", "artifact_type": "junit", "artifact_format": "gzip"},
	}
	j := e.newJob(e.payload(5400, e.head, withScript(script...), withKey("artifacts", arts)))
	if r := j.runAll(); r.build == 0 {
		t.Fatalf("the script did not fail\n%s", j.log.String())
	}
	var names []string
	for _, u := range g.uploads() {
		names = append(names, u.Filename)
	}
	if !slices.Equal(names, []string{"bad.zip", "artifacts.gz"}) {
		t.Fatalf("uploaded %q after a failure, want bad.zip and artifacts.gz\n%s", names, j.log.String())
	}
}

// TestUploadsAnswers: a refusal by GitLab fails the stage with GitLab's
// status; a redirect is not followed, so the job token goes nowhere else.
func TestUploadsAnswers(t *testing.T) {
	t.Parallel()
	var elsewhere sync.Mutex
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Lock()
		leaked = append(leaked, r.Header.Get("JOB-TOKEN"))
		elsewhere.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(other.Close)
	// The subtests are parallel, so they run after this function returns:
	// the leak check waits for them in a cleanup.
	t.Cleanup(func() {
		elsewhere.Lock()
		defer elsewhere.Unlock()
		if len(leaked) > 0 {
			t.Errorf("the redirect target received %d request(s) with tokens %q", len(leaked), leaked)
		}
	})
	for name, tc := range map[string]struct {
		handler http.HandlerFunc
		want    string
	}{
		"forbidden": {func(w http.ResponseWriter, r *http.Request) { http.Error(w, "403 Forbidden", http.StatusForbidden) }, "GitLab answered 403 Forbidden"},
		"redirect": {func(w http.ResponseWriter, r *http.Request) {
			// 302, not 307: Go's client would follow it (as a GET that
			// keeps JOB-TOKEN), where it cannot replay a streamed body.
			http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusFound)
		}, "GitLab answered 302 Found"},
		"too large": {func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusRequestEntityTooLarge) }, "larger than the instance or project allows"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			e := uploadsEnv(t, &fakeGitLab{Server: srv}, uploadScript, twoUploads)
			j := e.newJob(e.payload(5500, e.head, withScript(uploadScript...), withKey("artifacts", payloadArtifacts())))
			j.runAll()
			if !strings.Contains(j.log.String(), tc.want) {
				t.Fatalf("the log does not say %q:\n%s", tc.want, j.log.String())
			}
		})
	}
}

// TestUploadsRecordedBeforeSent: when GitLab receives an artifact, the
// audit log already lists its files, so a writ killed (kill -9) or
// stopped by a full disk after sending leaves a record of what it sent.
func TestUploadsRecordedBeforeSent(t *testing.T) {
	t.Parallel()
	var e *env
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		text := ""
		for _, rec := range e.auditRecords() {
			if rec.Event == EventUpload && rec.Job == "5700" && rec.Fields["status"] == "sending" {
				text = jsonText(t, rec.Fields)
			}
		}
		mu.Lock()
		seen = append(seen, text)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	e = uploadsEnv(t, &fakeGitLab{Server: srv}, uploadScript, twoUploads)
	j := e.newJob(e.payload(5700, e.head, withScript(uploadScript...), withKey("artifacts", payloadArtifacts())))
	j.runAll()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("%d uploads, want 2\n%s", len(seen), j.log.String())
	}
	for i, text := range seen {
		for _, want := range []string{`"path":"out/plan.txt"`, `"path":"report.xml"`, "manifest_sha256"} {
			if !strings.Contains(text, want) {
				t.Errorf("upload %d: the audit log did not yet list %s: %q", i, want, text)
			}
		}
	}
}
