package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"strings"
)

// Payload is a job as GitLab's POST /api/v4/jobs/request answers it: the
// JSON shape of the runner's spec.Job. Fields a test does not model can be
// set through Extra, which is merged into the JSON object (and wins).
type Payload struct {
	ID            int64         `json:"id"`
	Token         string        `json:"token"`
	AllowGitFetch bool          `json:"allow_git_fetch"`
	JobInfo       JobInfo       `json:"job_info"`
	GitInfo       GitInfo       `json:"git_info"`
	RunnerInfo    RunnerInfo    `json:"runner_info"`
	Variables     []Variable    `json:"variables"`
	Steps         []Step        `json:"steps"`
	Image         *Image        `json:"image,omitempty"`
	Services      []Image       `json:"services,omitempty"`
	Artifacts     []Artifact    `json:"artifacts,omitempty"`
	Cache         []Cache       `json:"cache,omitempty"`
	Credentials   []Credential  `json:"credentials,omitempty"`
	Dependencies  []Dependency  `json:"dependencies,omitempty"`
	Features      Features      `json:"features"`
	Hooks         []Hook        `json:"hooks,omitempty"`
	PolicyOptions PolicyOptions `json:"policy_options"`
	// Run is the `run:` keyword: GitLab sends the steps as a JSON string.
	Run string `json:"run,omitempty"`

	// Extra fields merged into the object; a key here replaces the same
	// key of the modelled fields.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobInfo describes the job and its project.
type JobInfo struct {
	Name            string `json:"name"`
	Stage           string `json:"stage"`
	PipelineID      int64  `json:"pipeline_id"`
	ProjectID       int64  `json:"project_id"`
	ProjectName     string `json:"project_name"`
	ProjectFullPath string `json:"project_full_path"`
	NamespaceID     int64  `json:"namespace_id"`
	RootNamespaceID int64  `json:"root_namespace_id"`
	UserID          int64  `json:"user_id"`
	InstanceID      string `json:"instance_id,omitempty"`
}

// GitInfo says what to check out.
type GitInfo struct {
	RepoURL          string   `json:"repo_url"`
	RepoObjectFormat string   `json:"repo_object_format"`
	Ref              string   `json:"ref"`
	Sha              string   `json:"sha"`
	BeforeSha        string   `json:"before_sha"`
	RefType          string   `json:"ref_type"` // "branch" or "tag"
	Refspecs         []string `json:"refspecs"`
	Depth            int      `json:"depth"`
	Protected        *bool    `json:"protected,omitempty"`
}

// RunnerInfo carries the job timeout in seconds.
type RunnerInfo struct {
	Timeout int `json:"timeout"`
}

// Variable is one CI/CD variable.
type Variable struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Public bool   `json:"public"`
	File   bool   `json:"file,omitempty"`
	Masked bool   `json:"masked,omitempty"`
	Raw    bool   `json:"raw,omitempty"`
}

// Step is a script step: "script", "after_script" or, for release jobs,
// "release" (which the runner runs as stage step_release).
type Step struct {
	Name         string   `json:"name"`
	Script       []string `json:"script"`
	Timeout      int      `json:"timeout"`
	When         string   `json:"when"`
	AllowFailure bool     `json:"allow_failure"`
}

// Image is a job image or service.
type Image struct {
	Name       string     `json:"name"`
	Alias      string     `json:"alias,omitempty"`
	Command    []string   `json:"command,omitempty"`
	Entrypoint []string   `json:"entrypoint,omitempty"`
	Variables  []Variable `json:"variables,omitempty"`
}

// Artifact is an artifacts upload definition.
type Artifact struct {
	Name      string   `json:"name"`
	Untracked bool     `json:"untracked"`
	Paths     []string `json:"paths"`
	When      string   `json:"when"`
	Type      string   `json:"artifact_type"`
	Format    string   `json:"artifact_format"`
	ExpireIn  string   `json:"expire_in"`
}

// Cache is a cache definition.
type Cache struct {
	Key       string   `json:"key"`
	Untracked bool     `json:"untracked"`
	Policy    string   `json:"policy"`
	Paths     []string `json:"paths"`
	When      string   `json:"when"`
}

// Credential is a registry credential.
type Credential struct {
	Type     string `json:"type"`
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// Dependency is an upstream job whose artifacts are downloaded.
type Dependency struct {
	ID            int64          `json:"id"`
	Token         string         `json:"token"`
	Name          string         `json:"name"`
	ArtifactsFile DependencyFile `json:"artifacts_file"`
}

// DependencyFile names a dependency's artifacts archive.
type DependencyFile struct {
	Filename string `json:"filename"`
	Size     int64  `json:"size"`
}

// Features are GitLab's capability flags for the runner.
type Features struct {
	TraceSections     bool     `json:"trace_sections"`
	TokenMaskPrefixes []string `json:"token_mask_prefixes,omitempty"`
	FailureReasons    []string `json:"failure_reasons"`
}

// Hook is a job hook such as pre_get_sources_script.
type Hook struct {
	Name   string   `json:"name"`
	Script []string `json:"script"`
}

// PolicyOptions mark pipeline-execution-policy jobs.
type PolicyOptions struct {
	PolicyJob bool   `json:"execution_policy_job"`
	Name      string `json:"policy_name,omitempty"`
}

// MarshalJSON encodes p with Extra merged in.
func (p *Payload) MarshalJSON() ([]byte, error) {
	type plain Payload
	b, err := json.Marshal((*plain)(p))
	if err != nil || len(p.Extra) == 0 {
		return b, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, err
	}
	maps.Copy(obj, p.Extra)
	return json.Marshal(obj)
}

// Clone returns a deep copy of p.
func (p *Payload) Clone() *Payload {
	b, err := json.Marshal((*payloadNoExtra)(p))
	if err != nil {
		panic(fmt.Sprintf("e2e: cloning payload: %v", err))
	}
	var c Payload
	if err := json.Unmarshal(b, (*payloadNoExtra)(&c)); err != nil {
		panic(fmt.Sprintf("e2e: cloning payload: %v", err))
	}
	c.Extra = maps.Clone(p.Extra)
	return &c
}

type payloadNoExtra Payload

// Var returns the value of the last variable named key, and whether it exists.
func (p *Payload) Var(key string) (string, bool) {
	for i := len(p.Variables) - 1; i >= 0; i-- {
		if p.Variables[i].Key == key {
			return p.Variables[i].Value, true
		}
	}
	return "", false
}

// SetVar replaces every variable named key with one public variable, or
// appends it.
func (p *Payload) SetVar(key, value string) {
	out := p.Variables[:0]
	for _, v := range p.Variables {
		if v.Key != key {
			out = append(out, v)
		}
	}
	p.Variables = append(out, Variable{Key: key, Value: value, Public: true})
}

// Step returns a pointer to the step named name, or nil.
func (p *Payload) Step(name string) *Step {
	for i := range p.Steps {
		if p.Steps[i].Name == name {
			return &p.Steps[i]
		}
	}
	return nil
}

// Job describes a job for NewPayload.
type Job struct {
	ID          int64
	PipelineID  int64
	ProjectID   int64
	Project     string // full path, e.g. "acme/app"
	Name        string // job name, e.g. "deploy"
	Stage       string
	Environment string // "" for a job without environment
	RepoURL     string // clone URL without credentials
	Ref         string // branch or tag name
	RefType     string // "branch" (default) or "tag"
	Sha         string
	BeforeSha   string
	Script      []string
	AfterScript []string
	Timeout     int    // seconds, default 3600
	ServerURL   string // the coordinator's URL
}

// FailureReasons is what current GitLab advertises in features.failure_reasons.
var FailureReasons = []string{
	"unknown_failure", "script_failure", "api_failure", "stuck_or_timeout_failure",
	"runner_system_failure", "missing_dependency_failure", "runner_unsupported",
	"stale_schedule", "job_execution_timeout", "archived_failure",
	"unmet_prerequisites", "scheduler_failure", "data_integrity_failure",
	"forward_deployment_failure", "user_blocked", "project_deleted",
	"ci_quota_exceeded", "pipeline_loop_detected", "no_matching_runner",
	"trace_size_exceeded", "builds_disabled", "environment_creation_failure",
	"deployment_rejected", "failed_outdated_deployment_job",
	"protected_environment_failure", "insufficient_bridge_permissions",
	"downstream_bridge_project_not_found", "invalid_bridge_trigger",
	"upstream_bridge_project_not_found", "insufficient_upstream_permissions",
	"bridge_pipeline_is_child_pipeline", "downstream_pipeline_creation_failed",
	"secrets_provider_not_found", "reached_max_descendant_pipelines_depth",
	"ip_restriction_failure", "reached_max_pipeline_hierarchy_size",
	"reached_downstream_pipeline_trigger_rate_limit", "image_pull_failure",
	"runner_configuration_error", "runner_external_dependency_failure",
}

// NewPayload builds a payload shaped like the one GitLab sends for j,
// including the predefined variables GitLab sets.
func NewPayload(j Job) *Payload {
	if j.RefType == "" {
		j.RefType = "branch"
	}
	if j.Timeout == 0 {
		j.Timeout = 3600
	}
	if j.Stage == "" {
		j.Stage = "deploy"
	}
	if j.BeforeSha == "" {
		j.BeforeSha = strings.Repeat("0", 40)
	}
	token := fmt.Sprintf("glcbt-64_job%d-%s", j.ID, strings.Repeat("x", 12))
	server, _ := url.Parse(j.ServerURL)
	host, port := "gitlab.example.com", "443"
	if server != nil && server.Host != "" {
		host = server.Hostname()
		port = server.Port()
	}
	namespace, name := splitProject(j.Project)
	slug := refSlug(j.Ref)
	projectURL := strings.TrimSuffix(j.ServerURL, "/") + "/" + j.Project
	protected := true

	p := &Payload{
		ID:            j.ID,
		Token:         token,
		AllowGitFetch: true,
		JobInfo: JobInfo{
			Name: j.Name, Stage: j.Stage, PipelineID: j.PipelineID,
			ProjectID: j.ProjectID, ProjectName: name, ProjectFullPath: j.Project,
			NamespaceID: 10, RootNamespaceID: 10, UserID: 7,
		},
		GitInfo: GitInfo{
			RepoURL:          withJobToken(j.RepoURL, token),
			RepoObjectFormat: "sha1",
			Ref:              j.Ref,
			Sha:              j.Sha,
			BeforeSha:        j.BeforeSha,
			RefType:          j.RefType,
			Refspecs:         []string{refspec(j.Ref, j.RefType)},
			Depth:            20,
			Protected:        &protected,
		},
		RunnerInfo: RunnerInfo{Timeout: j.Timeout},
		Steps: []Step{{
			Name: "script", Script: j.Script, Timeout: j.Timeout, When: "on_success",
		}},
		Features: Features{
			TraceSections:     true,
			TokenMaskPrefixes: []string{"glpat-", "glcbt-", "gldt-"},
			FailureReasons:    FailureReasons,
		},
	}
	if len(j.AfterScript) > 0 {
		p.Steps = append(p.Steps, Step{
			Name: "after_script", Script: j.AfterScript, Timeout: j.Timeout, When: "always",
		})
	}

	v := func(key, value string, public bool) {
		p.Variables = append(p.Variables, Variable{Key: key, Value: value, Public: public})
	}
	jobURL := fmt.Sprintf("%s/-/jobs/%d", projectURL, j.ID)
	v("CI_JOB_TOKEN", token, false)
	p.Variables[len(p.Variables)-1].Masked = true
	v("CI_JOB_JWT_V2", "eyJhbGciOiJSUzI1NiJ9.e2e.invalid", false)
	v("CI", "true", true)
	v("GITLAB_CI", "true", true)
	v("CI_SERVER_URL", j.ServerURL, true)
	v("CI_SERVER_HOST", host, true)
	v("CI_SERVER_PORT", port, true)
	v("CI_SERVER_PROTOCOL", "http", true)
	v("CI_SERVER_NAME", "GitLab", true)
	v("CI_SERVER_VERSION", "18.4.0-ee", true)
	v("CI_API_V4_URL", strings.TrimSuffix(j.ServerURL, "/")+"/api/v4", true)
	v("CI_PROJECT_ID", strconv.FormatInt(j.ProjectID, 10), true)
	v("CI_PROJECT_NAME", name, true)
	v("CI_PROJECT_TITLE", name, true)
	v("CI_PROJECT_PATH", j.Project, true)
	v("CI_PROJECT_PATH_SLUG", refSlug(j.Project), true)
	v("CI_PROJECT_NAMESPACE", namespace, true)
	v("CI_PROJECT_ROOT_NAMESPACE", strings.SplitN(j.Project, "/", 2)[0], true)
	v("CI_PROJECT_URL", projectURL, true)
	v("CI_PROJECT_VISIBILITY", "private", true)
	v("CI_DEFAULT_BRANCH", "main", true)
	v("CI_PIPELINE_ID", strconv.FormatInt(j.PipelineID, 10), true)
	v("CI_PIPELINE_IID", "42", true)
	v("CI_PIPELINE_SOURCE", "push", true)
	v("CI_PIPELINE_URL", fmt.Sprintf("%s/-/pipelines/%d", projectURL, j.PipelineID), true)
	v("CI_JOB_ID", strconv.FormatInt(j.ID, 10), true)
	v("CI_JOB_URL", jobURL, true)
	v("CI_JOB_NAME", j.Name, true)
	v("CI_JOB_NAME_SLUG", refSlug(j.Name), true)
	v("CI_JOB_STAGE", j.Stage, true)
	v("CI_COMMIT_SHA", j.Sha, true)
	v("CI_COMMIT_SHORT_SHA", short(j.Sha), true)
	v("CI_COMMIT_BEFORE_SHA", j.BeforeSha, true)
	v("CI_COMMIT_REF_NAME", j.Ref, true)
	v("CI_COMMIT_REF_SLUG", slug, true)
	v("CI_COMMIT_REF_PROTECTED", "true", true)
	if j.RefType == "tag" {
		v("CI_COMMIT_TAG", j.Ref, true)
	} else {
		v("CI_COMMIT_BRANCH", j.Ref, true)
	}
	v("CI_COMMIT_MESSAGE", "release", true)
	v("CI_COMMIT_AUTHOR", "Test Author <author@example.com>", true)
	v("CI_REPOSITORY_URL", p.GitInfo.RepoURL, false)
	v("GITLAB_USER_ID", "7", true)
	v("GITLAB_USER_LOGIN", "alice", true)
	v("GITLAB_USER_EMAIL", "alice@example.com", true)
	v("GITLAB_USER_NAME", "Alice", true)
	v("CI_RUNNER_TAGS", `["writ"]`, true)
	v("CI_NODE_TOTAL", "1", true)
	if j.Environment != "" {
		v("CI_ENVIRONMENT_NAME", j.Environment, true)
		v("CI_ENVIRONMENT_SLUG", refSlug(j.Environment), true)
		v("CI_ENVIRONMENT_TIER", j.Environment, true)
		v("CI_ENVIRONMENT_ACTION", "start", true)
		v("CI_ENVIRONMENT_URL", "https://"+refSlug(j.Environment)+".example.com", true)
	}
	return p
}

func splitProject(path string) (namespace, name string) {
	i := strings.LastIndex(path, "/")
	if i < 0 {
		return "", path
	}
	return path[:i], path[i+1:]
}

func short(sha string) string {
	if len(sha) > 8 {
		return sha[:8]
	}
	return sha
}

func refspec(ref, refType string) string {
	if refType == "tag" {
		return "+refs/tags/" + ref + ":refs/tags/" + ref
	}
	return "+refs/heads/" + ref + ":refs/remotes/origin/" + ref
}

// refSlug is GitLab's slug: lower case, [a-z0-9] kept, others "-", at most 63.
func refSlug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 63 {
		out = strings.TrimRight(out[:63], "-")
	}
	return out
}

// withJobToken puts GitLab's gitlab-ci-token credentials into an http(s) URL.
func withJobToken(repo, token string) string {
	u, err := url.Parse(repo)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return repo
	}
	u.User = url.UserPassword("gitlab-ci-token", token)
	return u.String()
}
