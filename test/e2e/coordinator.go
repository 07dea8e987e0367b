package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds on what the fake GitLab keeps in memory per job.
const (
	maxTraceBytes    = 64 << 20
	maxArtifactBytes = 64 << 20
	maxRequestBody   = 1 << 20
)

// Coordinator is a fake GitLab speaking the runner API on 127.0.0.1. It
// serves queued job payloads verbatim, records every job update, trace
// patch and artifact upload, and can cancel a job the way GitLab does (by
// answering "Job-Status: canceling").
type Coordinator struct {
	// RunnerToken is the token runners must present to request jobs.
	RunnerToken string

	srv *http.Server
	url string

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every recorded change
	queue     []queuedJob
	jobs      map[int64]*JobRecord
	requests  []Request
	artifacts map[int64][]byte // downloadable artifacts (dependencies), by job ID
}

type queuedJob struct {
	id    int64
	token string
	body  []byte
}

// Request is one HTTP request the coordinator received.
type Request struct {
	Time   time.Time
	Method string
	Path   string // with the query
	Status int
}

// JobUpdate is one PUT /api/v4/jobs/:id the runner sent.
type JobUpdate struct {
	Time          time.Time
	State         string `json:"state"`
	FailureReason string `json:"failure_reason"`
	ExitCode      int    `json:"exit_code"`
	Output        struct {
		Checksum string `json:"checksum"`
		Bytesize int    `json:"bytesize"`
	} `json:"output"`
}

// Final reports whether u ends the job.
func (u JobUpdate) Final() bool { return u.State == "success" || u.State == "failed" }

// Upload is one artifacts upload (POST /api/v4/jobs/:id/artifacts, as
// GitLab's job artifacts API documents it).
type Upload struct {
	Query string // artifact_type, artifact_format, expire_in
	// Type, Format and ExpireIn are the query's artifact_type,
	// artifact_format and expire_in.
	Type, Format, ExpireIn string
	// Filename and Data are the multipart "file" part's.
	Filename string
	Data     []byte
}

// JobRecord is everything the coordinator saw of one job.
type JobRecord struct {
	ID        int64
	Token     string
	Payload   []byte
	Served    time.Time // when it was last served
	Serves    int       // how many times it was served (twins share an ID)
	Updates   []JobUpdate
	Trace     []byte
	Uploads   []Upload
	Cancel    bool // cancellation requested
	Truncated bool // the trace exceeded maxTraceBytes
}

// NewCoordinator starts a coordinator on a random 127.0.0.1 port.
func NewCoordinator() (*Coordinator, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("coordinator: listen on 127.0.0.1: %w", err)
	}
	c := &Coordinator{
		RunnerToken: "glrt-e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		url:         "http://" + ln.Addr().String(),
		changed:     make(chan struct{}),
		jobs:        map[int64]*JobRecord{},
		artifacts:   map[int64][]byte{},
	}
	c.srv = &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// URL is the GitLab URL to give the runner, e.g. http://127.0.0.1:4321.
func (c *Coordinator) URL() string { return c.url }

// Close stops the server.
func (c *Coordinator) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.srv.Shutdown(ctx)
}

// Enqueue queues p; it is served verbatim (as JSON) to the next job request.
func (c *Coordinator) Enqueue(p *Payload) error {
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("coordinator: encoding payload: %w", err)
	}
	c.EnqueueRaw(p.ID, p.Token, body)
	return nil
}

// EnqueueRaw queues body as the response to the next job request. id and
// token are what the coordinator expects in the job's later updates; body
// need not be valid JSON.
func (c *Coordinator) EnqueueRaw(id int64, token string, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queue = append(c.queue, queuedJob{id: id, token: token, body: bytes.Clone(body)})
}

// SetArtifacts makes data the artifacts archive of job id, downloadable with
// that job's token (as the runner does for dependencies).
func (c *Coordinator) SetArtifacts(id int64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.artifacts[id] = bytes.Clone(data)
}

// RequestCancel makes GitLab answer "Job-Status: canceling" to the job's
// next update or trace patch, which makes the runner cancel it.
func (c *Coordinator) RequestCancel(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j := c.jobs[id]; j != nil {
		j.Cancel = true
	} else {
		c.jobs[id] = &JobRecord{ID: id, Cancel: true}
	}
	c.notifyLocked()
}

// Job returns a copy of what was recorded for job id, or nil.
func (c *Coordinator) Job(id int64) *JobRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[id]
	if j == nil {
		return nil
	}
	cp := *j
	cp.Updates = append([]JobUpdate(nil), j.Updates...)
	cp.Trace = bytes.Clone(j.Trace)
	cp.Uploads = append([]Upload(nil), j.Uploads...)
	return &cp
}

// Requests returns every request received so far.
func (c *Coordinator) Requests() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.requests...)
}

// Pending is the number of queued jobs not yet served.
func (c *Coordinator) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Wait blocks until cond is true or ctx ends. cond is called after every
// recorded change; it may use the coordinator's accessors (Job, Requests).
func (c *Coordinator) Wait(ctx context.Context, cond func() bool) error {
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func (c *Coordinator) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

var (
	jobUpdatePath = regexp.MustCompile(`^/api/v4/jobs/([0-9]+)$`)
	jobTracePath  = regexp.MustCompile(`^/api/v4/jobs/([0-9]+)/trace$`)
	artifactsPath = regexp.MustCompile(`^/api/v4/jobs/([0-9]+)/artifacts$`)
)

// ServeHTTP implements the runner API.
func (c *Coordinator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		c.mu.Lock()
		c.requests = append(c.requests, Request{Time: time.Now(), Method: r.Method, Path: r.URL.RequestURI(), Status: rec.status})
		c.notifyLocked()
		c.mu.Unlock()
	}()
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && p == "/api/v4/jobs/request":
		c.requestJob(rec, r)
	case r.Method == http.MethodPost && p == "/api/v4/runners/verify":
		c.verifyRunner(rec, r)
	case r.Method == http.MethodPut && jobUpdatePath.MatchString(p):
		c.updateJob(rec, r, pathID(jobUpdatePath, p))
	case r.Method == http.MethodPatch && jobTracePath.MatchString(p):
		c.patchTrace(rec, r, pathID(jobTracePath, p))
	case r.Method == http.MethodPost && artifactsPath.MatchString(p):
		c.uploadArtifacts(rec, r, pathID(artifactsPath, p))
	case r.Method == http.MethodGet && artifactsPath.MatchString(p):
		c.downloadArtifacts(rec, r, pathID(artifactsPath, p))
	default:
		// Anything else (e.g. job router discovery) is "not here", as on a
		// GitLab without the feature; the request log shows it.
		http.NotFound(rec, r)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func pathID(re *regexp.Regexp, p string) int64 {
	id, _ := strconv.ParseInt(re.FindStringSubmatch(p)[1], 10, 64)
	return id
}

func (c *Coordinator) requestJob(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if req.Token != c.RunnerToken {
		http.Error(w, "403 Forbidden", http.StatusForbidden)
		return
	}
	c.mu.Lock()
	if len(c.queue) == 0 {
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	q := c.queue[0]
	c.queue = c.queue[1:]
	j := c.jobs[q.id]
	if j == nil {
		j = &JobRecord{ID: q.id}
		c.jobs[q.id] = j
	}
	j.Token, j.Payload, j.Served = q.token, q.body, time.Now()
	j.Serves++
	c.notifyLocked()
	c.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(q.body)
}

func (c *Coordinator) verifyRunner(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&req); err != nil || req.Token != c.RunnerToken {
		http.Error(w, "403 Forbidden", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"id":1,"token":%q}`, c.RunnerToken)
}

// authJob returns the job record if the request carries its job token.
// Called with c.mu held.
func (c *Coordinator) authJobLocked(r *http.Request, id int64, bodyToken string) (*JobRecord, bool) {
	j := c.jobs[id]
	if j == nil || j.Token == "" {
		return nil, false
	}
	tok := r.Header.Get("JOB-TOKEN")
	if tok == "" {
		tok = bodyToken
	}
	return j, tok == j.Token
}

// jobStatusLocked is the Job-Status GitLab reports for j.
func jobStatusLocked(j *JobRecord) string {
	if j.Cancel {
		return "canceling"
	}
	return "running"
}

func (c *Coordinator) updateJob(w http.ResponseWriter, r *http.Request, id int64) {
	var req struct {
		Token string `json:"token"`
		JobUpdate
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j, ok := c.authJobLocked(r, id, req.Token)
	if !ok {
		http.Error(w, "403 Forbidden", http.StatusForbidden)
		return
	}
	u := req.JobUpdate
	u.Time = time.Now()
	j.Updates = append(j.Updates, u)
	c.notifyLocked()
	if !u.Final() {
		w.Header().Set("Job-Status", jobStatusLocked(j))
		w.Header().Set("X-GitLab-Trace-Update-Interval", "1")
	}
	w.WriteHeader(http.StatusOK)
}

func (c *Coordinator) patchTrace(w http.ResponseWriter, r *http.Request, id int64) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody*8))
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j, ok := c.authJobLocked(r, id, "")
	if !ok {
		http.Error(w, "403 Forbidden", http.StatusForbidden)
		return
	}
	start, end, ok := parseContentRange(r.Header.Get("Content-Range"))
	w.Header().Set("Job-Status", jobStatusLocked(j))
	w.Header().Set("X-GitLab-Trace-Update-Interval", "1")
	if ok && j.Serves > 1 && end-start+1 == len(body) {
		// Twins (one job ID served to several runners) cannot share one
		// offset; a hostile GitLab keeps every runner going by accepting
		// each one's range, so their traces interleave.
		j.Trace = append(j.Trace, body[:min(len(body), max(0, maxTraceBytes-len(j.Trace)))]...)
		c.notifyLocked()
		w.Header().Set("Range", fmt.Sprintf("0-%d", end+1))
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if !ok || start != len(j.Trace) || end-start+1 != len(body) {
		// What GitLab does on a gap or overlap: tell the runner where we are.
		w.Header().Set("Range", fmt.Sprintf("0-%d", len(j.Trace)))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	if len(j.Trace)+len(body) > maxTraceBytes {
		j.Truncated = true
		body = body[:max(0, maxTraceBytes-len(j.Trace))]
	}
	j.Trace = append(j.Trace, body...)
	c.notifyLocked()
	w.Header().Set("Range", fmt.Sprintf("0-%d", start+len(body)))
	w.WriteHeader(http.StatusAccepted)
}

// parseContentRange parses the runner's "start-end" (inclusive).
func parseContentRange(s string) (start, end int, ok bool) {
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.Atoi(a)
	end, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	return start, end, true
}

func (c *Coordinator) uploadArtifacts(w http.ResponseWriter, r *http.Request, id int64) {
	q := r.URL.Query()
	up := Upload{Query: r.URL.RawQuery, Type: q.Get("artifact_type"), Format: q.Get("artifact_format"), ExpireIn: q.Get("expire_in")}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var err error
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(io.LimitReader(r.Body, maxArtifactBytes+1<<20), params["boundary"])
		for {
			part, perr := mr.NextPart()
			if perr != nil {
				if !errors.Is(perr, io.EOF) {
					err = perr
				}
				break
			}
			if part.FormName() == "file" {
				up.Filename = part.FileName()
				up.Data, err = io.ReadAll(io.LimitReader(part, maxArtifactBytes))
			}
			_ = part.Close()
		}
	} else {
		up.Data, err = io.ReadAll(io.LimitReader(r.Body, maxArtifactBytes))
	}
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	j, ok := c.authJobLocked(r, id, "")
	if !ok {
		http.Error(w, "403 Forbidden", http.StatusForbidden)
		return
	}
	j.Uploads = append(j.Uploads, up)
	c.notifyLocked()
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, "{}")
}

func (c *Coordinator) downloadArtifacts(w http.ResponseWriter, r *http.Request, id int64) {
	c.mu.Lock()
	data, ok := c.artifacts[id]
	c.mu.Unlock()
	// Dependencies are fetched with the dependency's own token; GitLab
	// checks it, and so do we when a test registered one.
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
}
