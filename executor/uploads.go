package executor

// The upload stages: writ uploads exactly the files an admitted entry's
// uploads name, through GitLab's job artifacts API (the endpoint the
// runner's artifacts-uploader uses), to the GitLab of writ's own config.
// GitLab's stage script, its paths and its URL are never used.

import (
	"archive/zip"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/audit"
)

// EventUpload is the audit event of an upload stage: what was uploaded
// (each file's path, size and SHA-256) or why nothing was.
const EventUpload = "upload"

// cacheRefusal is why writ never saves a cache.
const cacheRefusal = "writ never saves a cache: GitLab restores a cache into later jobs unsigned, so writ never restores one either; keep files of a job with the entry's uploads instead"

// uploadedFile is one file of an uploaded artifact, as the audit log
// records it.
type uploadedFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// uploadedArtifact is one artifact an upload stage sent (or would have).
type uploadedArtifact struct {
	Type     string         `json:"type"`
	Format   string         `json:"format"`
	Filename string         `json:"filename"`
	Files    []uploadedFile `json:"files"`
	// Bytes and SHA256 describe the archive as sent.
	Bytes  int64  `json:"archive_bytes"`
	SHA256 string `json:"archive_sha256"`
	// Status is GitLab's HTTP status, 0 when not sent.
	Status int `json:"http_status,omitempty"`

	archive  string // the archive's file in writ's job directory
	expireIn string
}

// uploadStage is upload_artifacts_on_success or upload_artifacts_on_failure
// for an admitted job.
func (o *Options) uploadStage(ctx context.Context, s *Snapshot, stage string) (int, string) {
	w := o.Stdout
	success := stage == "upload_artifacts_on_success"
	var up *allowlist.Uploads
	if s.Entry != nil {
		up = s.Entry.Definition.Uploads
	}
	if up == nil {
		fmt.Fprintf(w, "writ: %s skipped: the allowlist entry lists no uploads\n", stage)
		return 0, "skipped"
	}
	if _, err := os.Lstat(s.BuildDir); err != nil {
		fmt.Fprintf(w, "writ: %s skipped: the source was never checked out, so there is nothing to upload\n", stage)
		return 0, "skipped"
	}
	var arts []allowlist.Artifact
	for _, a := range up.Artifacts {
		if a.UploadsAfter(success) {
			arts = append(arts, a)
		}
	}
	if len(arts) == 0 {
		fmt.Fprintf(w, "writ: %s skipped: no artifact of the entry's uploads is for a job that %s\n", stage, map[bool]string{true: "succeeded", false: "failed"}[success])
		return 0, "skipped"
	}
	done, sent, err := o.upload(ctx, s, stage, up.MaxBytes, arts)
	fields := map[string]any{"stage": stage, "artifacts": auditArtifacts(done), "uploaded": sent}
	if err != nil {
		var ce *collectError
		code, status := o.systemFailure(), "error"
		if errors.As(err, &ce) {
			code, status = o.buildFailure(), "refused"
		}
		switch {
		case status == "refused":
			fmt.Fprintf(w, "%sERROR: writ: upload refused, nothing was uploaded%s: %v\n", ansiBoldRed, ansiReset, err)
		case sent == 0:
			fmt.Fprintf(w, "%sERROR: writ: upload failed, nothing was uploaded%s: %v\n", ansiBoldRed, ansiReset, err)
		default:
			fmt.Fprintf(w, "%sERROR: writ: upload failed after %d artifact(s) were uploaded%s: %v\n", ansiBoldRed, sent, ansiReset, err)
		}
		if status == "refused" {
			fmt.Fprintln(w, "writ uploads only regular files of the job's own inside the build directory, within the entry's max_bytes; change what the job leaves at the entry's upload paths, or get the entry changed.")
			o.writeExitCode(code)
		}
		fields["status"] = status
		o.auditUpload(ctx, s.Job.ID, err.Error(), fields)
		return code, status
	}
	fields["status"] = "uploaded"
	if err := o.auditUpload(ctx, s.Job.ID, "", fields); err != nil {
		fmt.Fprintf(w, "writ: cannot write the audit log: %v\n", err)
		return o.systemFailure(), "error"
	}
	return 0, "success"
}

// upload collects every artifact first and sends them only when all are
// within bounds, so a refused upload sends nothing.
func (o *Options) upload(ctx context.Context, s *Snapshot, stage string, maxBytes int64, arts []allowlist.Artifact) (done []uploadedArtifact, sent int, err error) {
	base := strings.TrimRight(o.Config.GitLab.URL, "/")
	if base == "" {
		return nil, 0, errors.New("gitlab.url is not set in writ's config: writ sends uploads only to the GitLab the runner host's owners configured (set it to the url of the runner's config.toml)")
	}
	token, err := o.jobToken()
	if err != nil {
		return nil, 0, err
	}
	uid, err := o.uploadOwner(s)
	if err != nil {
		return nil, 0, err
	}
	tree, err := openBuildTree(s.BuildDir, uid)
	if err != nil {
		return nil, 0, err
	}
	defer tree.Close()
	budget := maxBytes
	defer func() {
		for _, a := range done {
			if a.archive != "" {
				os.Remove(a.archive)
			}
		}
	}()
	for i, a := range arts {
		ua, err := o.archiveArtifact(tree, s, i, a, &budget)
		done = append(done, ua)
		if err != nil {
			return done, 0, err
		}
	}
	// What is about to leave the host is recorded before the first byte
	// does: a writ killed (kill -9) or stopped by a full disk after
	// sending could otherwise leave no record of what it sent.
	for _, a := range done {
		if len(a.Files) > 0 {
			fields := map[string]any{"stage": stage, "status": "sending", "artifacts": auditArtifacts(done), "uploaded": 0}
			if err := o.auditUpload(ctx, s.Job.ID, "", fields); err != nil {
				return done, 0, fmt.Errorf("cannot write the audit log, so nothing is sent: %w", err)
			}
			break
		}
	}
	for i := range done {
		a := &done[i]
		if len(a.Files) == 0 {
			continue
		}
		if a.Status, err = o.send(ctx, base, s.Job.ID, token, a); err != nil {
			return done, sent, fmt.Errorf("upload %s artifact %s to %s: %w", a.Type, a.Filename, base, err)
		}
		sent++
		o.logUploaded(a, base)
	}
	return done, sent, nil
}

// logUploaded tells the job log what left the runner host.
func (o *Options) logUploaded(a *uploadedArtifact, base string) {
	w := o.Stdout
	fmt.Fprintf(w, "writ: uploaded %s artifact %s (%d file(s), %d bytes, sha256 %s) to %s\n", a.Type, a.Filename, len(a.Files), a.Bytes, a.SHA256, base)
	for n, f := range a.Files {
		if n == maxLoggedFiles {
			fmt.Fprintf(w, "writ:   … and %d more (the audit log lists them)\n", len(a.Files)-n)
			break
		}
		fmt.Fprintf(w, "writ:   %s (%d bytes, sha256 %s)\n", allowlist.Visible(f.Path), f.Size, f.SHA256)
	}
}

// uploadOwner is the uid every uploaded file must belong to: the job's
// sandbox uid, or job.user's; -1 (any) when jobs run as writ itself
// (sandbox.unsafe_no_sandbox without job.user), where nothing is private
// from the job anyway.
func (o *Options) uploadOwner(s *Snapshot) (int64, error) {
	if o.contained() {
		uid, err := o.stageUID(s.Job.ID)
		return int64(uid), err
	}
	u, err := o.lookupJobUser()
	if err != nil || u == nil {
		return -1, err
	}
	return int64(u.uid), nil
}

// jobToken reads the job token from the payload: it authenticates the
// upload as this job, and goes only to gitlab.url.
func (o *Options) jobToken() (string, error) {
	_, p, err := o.loadJob()
	if err != nil {
		return "", err
	}
	if p.JobToken == "" {
		return "", errors.New("the job payload carries no job token")
	}
	return p.JobToken, nil
}

// archiveArtifact writes artifact a's files into an archive in writ's job
// directory, charging their bytes to budget.
func (o *Options) archiveArtifact(tree *buildTree, s *Snapshot, i int, a allowlist.Artifact, budget *int64) (uploadedArtifact, error) {
	ua := uploadedArtifact{Type: string(a.Type), Format: a.Format(), Filename: artifactFilename(a), expireIn: a.ExpireIn}
	for _, p := range a.Paths {
		n, err := tree.match(p)
		if err != nil {
			return ua, err
		}
		if n == 0 {
			fmt.Fprintf(o.Stdout, "writ: WARNING: upload path %s matches no file\n", p)
		}
	}
	files := tree.files
	tree.files, tree.seen = nil, map[string]bool{}
	if len(files) == 0 {
		return ua, nil
	}
	f, err := os.CreateTemp(o.jobDir(s.Job.ID), fmt.Sprintf("upload-%d-*", i))
	if err != nil {
		return ua, err
	}
	ua.archive = f.Name()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	if a.Format() == "zip" {
		err = writeZip(cw, tree, files, budget, &ua)
	} else {
		err = writeGzip(cw, tree, files, budget, &ua)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	ua.Bytes, ua.SHA256 = cw.n, hex.EncodeToString(h.Sum(nil))
	return ua, err
}

func writeZip(w io.Writer, tree *buildTree, files []string, budget *int64, ua *uploadedArtifact) error {
	zw := zip.NewWriter(w)
	for _, p := range files {
		hdr := &zip.FileHeader{Name: p, Method: zip.Deflate, Modified: time.Unix(0, 0).UTC()}
		hdr.SetMode(0o644)
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		if err := copyFile(fw, tree, p, budget, ua); err != nil {
			return err
		}
	}
	return zw.Close()
}

// writeGzip writes one gzip member per file, named like the runner's gzip
// artifacts (the base name, and the path as the comment).
func writeGzip(w io.Writer, tree *buildTree, files []string, budget *int64, ua *uploadedArtifact) error {
	for _, p := range files {
		gz := gzip.NewWriter(w)
		gz.Name, gz.Comment = gzipText(path.Base(p)), gzipText(p)
		if err := copyFile(gz, tree, p, budget, ua); err != nil {
			return err
		}
		if err := gz.Close(); err != nil {
			return err
		}
	}
	return nil
}

// gzipText keeps a gzip header field to Latin-1 as RFC 1952 requires, the
// way the runner's archiver escapes names.
func gzipText(s string) string {
	for _, r := range s {
		if r > 0x7e || r == '%' {
			return "e:" + url.PathEscape(s)
		}
	}
	return s
}

// copyFile copies the collected file p into w, at most *budget bytes of
// it, and records its size and digest.
func copyFile(w io.Writer, tree *buildTree, p string, budget *int64, ua *uploadedArtifact) error {
	f, _, err := tree.openFile(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(f, *budget+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if n > *budget {
		return refusef("the files to upload are larger than the entry's max_bytes (reached at %s)", p)
	}
	*budget -= n
	ua.Files = append(ua.Files, uploadedFile{Path: p, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// artifactFilename is the file name the runner's artifacts-uploader gives
// an upload: the artifact's name (default "artifacts") and the format's
// extension.
func artifactFilename(a allowlist.Artifact) string {
	name := a.Name
	if name == "" {
		name = "artifacts"
	}
	if a.Format() == "zip" {
		return name + ".zip"
	}
	return name + ".gz"
}

// maxUploadAttempts bounds the tries of one upload (GitLab answers 5xx
// while it is busy, as the runner's own uploader expects).
const maxUploadAttempts = 3

// send POSTs the archive to GitLab's job artifacts endpoint as the job,
// as multipart form field "file", with artifact_format, artifact_type and
// expire_in as query parameters. Only 201 Created is success; a redirect
// is not followed (the token goes nowhere but gitlab.url).
func (o *Options) send(ctx context.Context, base, id, token string, ua *uploadedArtifact) (int, error) {
	q := url.Values{}
	q.Set("artifact_format", ua.Format)
	q.Set("artifact_type", ua.Type)
	if ua.expireIn != "" {
		q.Set("expire_in", ua.expireIn)
	}
	endpoint := base + "/api/v4/jobs/" + id + "/artifacts?" + q.Encode()
	client := &http.Client{
		Timeout:       o.Config.GitLab.UploadTimeout.Duration,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var last error
	for attempt := 1; attempt <= maxUploadAttempts; attempt++ {
		status, retry, err := o.post(ctx, client, endpoint, token, ua)
		if err == nil {
			return status, nil
		}
		last = err
		if !retry || attempt == maxUploadAttempts {
			return status, err
		}
		select {
		case <-ctx.Done():
			return status, ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	return 0, last
}

// post makes one attempt; retry says whether another may succeed.
func (o *Options) post(ctx context.Context, client *http.Client, endpoint, token string, ua *uploadedArtifact) (int, bool, error) {
	f, err := os.Open(ua.archive)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	// Closing the read end ends the writer below however the request
	// ends (GitLab may answer before reading the whole body).
	defer pr.Close()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile("file", ua.Filename)
		if err == nil {
			_, err = io.Copy(part, f)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, pr)
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("JOB-TOKEN", token)
	req.Header.Set("User-Agent", "writ/"+o.Version)
	resp, err := client.Do(req)
	if err != nil {
		return 0, true, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode == http.StatusCreated:
		return resp.StatusCode, false, nil
	case resp.StatusCode >= 500:
		return resp.StatusCode, true, fmt.Errorf("GitLab answered %s: %s", resp.Status, allowlist.Visible(strings.TrimSpace(string(body))))
	case resp.StatusCode == http.StatusRequestEntityTooLarge:
		return resp.StatusCode, false, fmt.Errorf("GitLab answered %s: the artifact is larger than the instance or project allows", resp.Status)
	}
	return resp.StatusCode, false, fmt.Errorf("GitLab answered %s: %s", resp.Status, allowlist.Visible(strings.TrimSpace(string(body))))
}

// maxLoggedFiles bounds the files the job log lists per artifact.
const maxLoggedFiles = 20

// maxAuditFiles bounds the files an upload record lists one by one; the
// manifest digest covers them all.
const maxAuditFiles = 1000

// auditArtifacts is what the audit log keeps of each artifact: every file
// (up to maxAuditFiles, then only the count), and manifest_sha256, the
// SHA-256 of "path NUL size NUL sha256 LF" for every file in upload order,
// which binds the complete list however long it is.
func auditArtifacts(done []uploadedArtifact) []map[string]any {
	out := make([]map[string]any, 0, len(done))
	for _, a := range done {
		h := sha256.New()
		for _, f := range a.Files {
			fmt.Fprintf(h, "%s\x00%d\x00%s\n", f.Path, f.Size, f.SHA256)
		}
		m := map[string]any{"type": a.Type, "format": a.Format, "filename": a.Filename,
			"files_total": len(a.Files), "manifest_sha256": hex.EncodeToString(h.Sum(nil)),
			"archive_bytes": a.Bytes, "archive_sha256": a.SHA256}
		if a.Status != 0 {
			m["http_status"] = a.Status
		}
		files := a.Files
		if len(files) > maxAuditFiles {
			files = files[:maxAuditFiles]
		}
		m["files"] = files
		out = append(out, m)
	}
	return out
}

func (o *Options) auditUpload(ctx context.Context, id, reason string, fields map[string]any) error {
	if o.Audit == nil {
		return errors.New("no audit log configured")
	}
	_, err := o.Audit.Append(ctx, audit.Record{Time: o.Now().UTC(), Event: EventUpload, Job: id, Env: o.Config.Environment,
		Reason: reason, Fields: fields})
	return err
}
