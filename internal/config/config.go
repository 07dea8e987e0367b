// Package config loads writ's environment-local configuration: the trust root.
//
// Nothing in it comes from GitLab and no secret lives in it: secrets are
// referenced by file path. Unknown keys are errors, so a typo never silently
// weakens a policy.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// DefaultPath is where writ looks for its configuration when neither
// --config nor WRIT_CONFIG names another file.
const DefaultPath = "/etc/writ/config.toml"

// EnvVar overrides DefaultPath.
const EnvVar = "WRIT_CONFIG"

// Mode is the executor's enforcement mode.
type Mode string

const (
	// Enforce refuses every job that fails admission. The default.
	Enforce Mode = "enforce"
	// Audit admits every job but reports, loudly, what Enforce would refuse.
	Audit Mode = "audit"
)

// Config is a loaded, validated configuration.
type Config struct {
	// Environment is this environment's name, matched against entries'
	// environments.
	Environment string `toml:"environment"`
	// Mode is "enforce" (refuse every job that fails admission) or "audit"
	// (admit every job, report loudly what enforce would refuse).
	Mode Mode `toml:"mode"`

	Allowlist AllowlistSource `toml:"allowlist"`
	Trust     Trust           `toml:"trust"`
	Paths     Paths           `toml:"paths"`
	Job       Job             `toml:"job"`
	Sandbox   Sandbox         `toml:"sandbox"`
	Fetch     Fetch           `toml:"fetch"`
	Log       Log             `toml:"log"`
	State     State           `toml:"state"`
	GitLab    GitLab          `toml:"gitlab"`

	// Path is the file the configuration was read from.
	Path string `toml:"-"`
}

// AllowlistSource says where the allowlist repository is and how to reach it.
type AllowlistSource struct {
	// URL of the allowlist repository: https://, ssh:// (or scp-like), or file://.
	URL string `toml:"url"`
	// Branch whose head is the proposed version. Default "main".
	Branch string `toml:"branch"`
	// Identity is the repository identity approvals must bind, and the
	// allowlist's own "repository" field must equal.
	Identity string `toml:"identity"`
	// Auth: "none" (default), "token-file" or "ssh-key".
	Auth string `toml:"auth"`
	// TokenFile holds an HTTPS access token (auth = "token-file").
	TokenFile string `toml:"token_file"`
	// Username for HTTPS basic auth with a token. Default "oauth2".
	Username string `toml:"username"`
	// SSHKeyFile is the private key for auth = "ssh-key".
	SSHKeyFile string `toml:"ssh_key_file"`
	// KnownHostsFile pins the allowlist server's host keys for auth = "ssh-key".
	KnownHostsFile string `toml:"known_hosts_file"`
	// FetchTimeout bounds one fetch. Default 30s.
	FetchTimeout Duration `toml:"fetch_timeout"`
	// RefreshInterval: a job reuses the last check of the remote if it is
	// younger than this. Default 0 (check on every job).
	RefreshInterval Duration `toml:"refresh_interval"`
	// MinVersion is the floor: no version below it is ever accepted, even
	// by an environment that has accepted nothing yet (a new host, or one
	// whose state was lost). 0 (the default) sets no floor.
	MinVersion int64 `toml:"min_version"`
	// StartCommit, if set, is the commit (full hex) the accepted history
	// starts from: every accepted head must be it or descend from it, even
	// on first contact.
	StartCommit string `toml:"start_commit"`
}

// Trust holds the root signers and the approval threshold.
type Trust struct {
	// OpenPGPKeyring is a file of armored OpenPGP public keys (several blocks allowed).
	OpenPGPKeyring string `toml:"openpgp_keyring"`
	// SSHAllowedSigners is a file in git's allowed_signers syntax.
	SSHAllowedSigners string `toml:"ssh_allowed_signers"`
	// SigstorePublicKeys are PEM public keys (ECDSA P-256 or Ed25519-ph) whose
	// Sigstore bundles count as approvals.
	SigstorePublicKeys []string `toml:"sigstore_public_keys"`
	// SigstoreTrustedRoot is a Sigstore trusted_root.json (Fulcio CAs, Rekor
	// logs), pinned here: keyless approvals are verified offline against it.
	SigstoreTrustedRoot string `toml:"sigstore_trusted_root"`
	// SigstoreIdentities are the keyless approvers (OIDC issuer and subject
	// certified by Fulcio); each needs SigstoreTrustedRoot.
	SigstoreIdentities []SigstoreIdentity `toml:"sigstore_identities"`
	// Threshold is how many distinct root signers must approve a version. Default 1.
	Threshold int `toml:"threshold"`
}

// SigstoreIdentity is one keyless approver: Issuer exactly, and Subject
// exactly or SubjectRegexp (anchored with ^ and $). The allowlist package
// checks them when it builds the verifier.
type SigstoreIdentity struct {
	Issuer        string `toml:"issuer"`
	Subject       string `toml:"subject"`
	SubjectRegexp string `toml:"subject_regexp"`
}

// Paths are writ's own directories and files.
type Paths struct {
	State  string `toml:"state"`  // accepted version, high-water mark, per-job decisions
	Cache  string `toml:"cache"`  // git mirrors, verified allowlist cache
	Audit  string `toml:"audit"`  // the audit log file
	Builds string `toml:"builds"` // per-job build directories
}

// Job is the fixed environment jobs run in.
type Job struct {
	Shell string            `toml:"shell"` // default "/bin/bash"
	Path  string            `toml:"path"`  // default "/usr/local/bin:/usr/bin:/bin"
	Home  string            `toml:"home"`  // default: the build directory
	Lang  string            `toml:"lang"`  // default "C.UTF-8"
	Env   map[string]string `toml:"env"`   // extra fixed variables, environment-local
	// User, if set, is the account job scripts run as when the sandbox is
	// off (sandbox.unsafe_no_sandbox). The sandbox's per-job uids replace
	// it: with the sandbox on, setting it is an error that says so.
	User string `toml:"user"`
	// DefaultTimeout applies when an entry sets none. Default 1h.
	DefaultTimeout Duration `toml:"default_timeout"`
	// MaxPayloadBytes bounds the job payload. Default 4 MiB.
	MaxPayloadBytes int64 `toml:"max_payload_bytes"`
	// ServerURL is the GitLab instance's URL as the runner knows it
	// (https://gitlab.example.com, no path): writ builds CI_SERVER_URL,
	// CI_PROJECT_URL, CI_JOB_URL and CI_API_V4_URL from it, never from
	// GitLab's variables. Unset, those variables are not set.
	ServerURL string `toml:"server_url"`
}

// Sandbox is how every job process is contained (package sandbox).
type Sandbox struct {
	// UnsafeNoSandbox runs jobs uncontained, as writ's own user: an
	// admitted job can then read writ's keys and rewrite its state, audit
	// log and other jobs. Only for hosts that cannot run the sandbox and
	// contain the runner some other way.
	UnsafeNoSandbox bool `toml:"unsafe_no_sandbox"`
	// UIDFirst and UIDCount are the range of uids (and gids) jobs run as,
	// one per running job; no account may use them. Default
	// 2000000000 and 1000.
	UIDFirst uint32 `toml:"uid_first"`
	UIDCount uint32 `toml:"uid_count"`
	// PidsMax bounds a job's processes (default 4096; -1: no limit).
	PidsMax int64 `toml:"pids_max"`
	// MemoryMaxBytes bounds a stage's memory, its /tmp included (default
	// 4 GiB; -1: no limit).
	MemoryMaxBytes int64 `toml:"memory_max_bytes"`
	// TmpSizeBytes bounds the job's private /tmp (default 1 GiB).
	TmpSizeBytes int64 `toml:"tmp_size_bytes"`
	// HostPaths are the host directories jobs see read-only (default
	// /usr /bin /sbin /lib /lib32 /lib64 /libx32 /etc).
	HostPaths []string `toml:"host_paths"`
	// Hide are more host paths jobs must not see, besides writ's own
	// (default: /etc/gitlab-runner, which holds the runner's tokens).
	Hide []string `toml:"hide"`
	// Images: "run" (default) runs a job whose entry names an image in
	// that image, fetched by its digest; "ignore" runs it on the host's
	// read-only directories like any other job.
	Images string `toml:"images"`
	// ImageMaxBytes bounds one image, compressed and unpacked (default 8 GiB).
	ImageMaxBytes int64 `toml:"image_max_bytes"`
}

// Fetch bounds what writ takes from a git server (the allowlist's and the
// entries' repositories), which may be hostile: limits are enforced while
// a pack is read, before anything is inflated into memory, and a fetch
// over one is refused with an error naming the key.
type Fetch struct {
	// MaxBytes bounds the pack bytes one fetch receives. Default 1 GiB.
	MaxBytes int64 `toml:"max_bytes"`
	// MaxObjects bounds the objects in one pack. Default 1,000,000.
	MaxObjects int64 `toml:"max_objects"`
	// MaxObjectBytes bounds the inflated size of any one object. Default
	// 100 MiB (GitHub's limit for one file).
	MaxObjectBytes int64 `toml:"max_object_bytes"`
	// MaxMirrorBytes bounds one mirror on disk; a larger one is rebuilt
	// with only the refs a decision needs. Default 4 GiB.
	MaxMirrorBytes int64 `toml:"max_mirror_bytes"`
}

// Log configures operational logs (not the audit log).
type Log struct {
	Format string `toml:"format"` // "text" (default) or "json"
	Level  string `toml:"level"`  // "info" (default), "trace", "debug", "warn", "error"
	// File receives operational logs when set; otherwise they go to standard
	// error, which for executor stages is the job log.
	File string `toml:"file"`
}

// State says where the trust state lives: the accepted allowlist version,
// per-entry rollback marks, remembered rejections and job-id claims.
type State struct {
	// Backend: "local" (default; files under paths.state, one host) or
	// "etcd" (shared by a fleet of runner hosts; paths.state stays each
	// host's floor).
	Backend string `toml:"backend"`
	// Fallback: "none" (default: an unreachable store fails every job
	// closed) or "local" (decide on this host's own state alone while the
	// store is unreachable; weaker: a fresh host then knows no marks).
	Fallback string `toml:"fallback"`
	// Host names this runner host in the shared store. Default: the
	// hostname.
	Host string    `toml:"host"`
	Etcd StateEtcd `toml:"etcd"`
}

// StateEtcd is the fleet store: an etcd cluster reached over mutual TLS.
type StateEtcd struct {
	// Endpoints are the members' client URLs, https:// only.
	Endpoints []string `toml:"endpoints"`
	// CAFile verifies the members' certificates.
	CAFile string `toml:"ca_file"`
	// CertFile and KeyFile are this host's client certificate.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Prefix keeps one environment's keys apart. Default
	// "/writ/<environment>/".
	Prefix string `toml:"prefix"`
	// Timeout bounds each request to the store. Default 5s.
	Timeout Duration `toml:"timeout"`
	// JobClaimTTL is how long a job id stays claimed fleet-wide. Default
	// 168h.
	JobClaimTTL Duration `toml:"job_claim_ttl"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Resolve returns the configuration path to use: flag, then WRIT_CONFIG, then DefaultPath.
func Resolve(flag string) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv(EnvVar); v != "" {
		return v
	}
	return DefaultPath
}

const maxConfigBytes = 1 << 20

// Load reads and validates the configuration at path. Relative paths in it
// are resolved against the file's own directory, never the working
// directory of whoever runs writ (the runner's differs from an operator's).
func Load(path string) (*Config, error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read writ config: %w (set --config or %s)", err, EnvVar)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxConfigBytes+1)); err != nil {
		return nil, fmt.Errorf("read writ config %s: %w", path, err)
	}
	if buf.Len() > maxConfigBytes {
		return nil, fmt.Errorf("writ config %s is larger than %d bytes", path, maxConfigBytes)
	}
	c, err := Parse(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("writ config %s: %w", path, err)
	}
	c.Path = path
	c.resolveRelative(filepath.Dir(path))
	return c, nil
}

var envName = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
var varName = lazyre.New(`^[A-Za-z_][A-Za-z0-9_]*$`)
var userName = lazyre.New(`^[a-z_][a-z0-9_-]{0,31}$`)
var commitID = lazyre.New(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// Parse decodes configuration text and applies defaults. Relative paths are
// left as they are; Load resolves them against the file's directory.
func Parse(data []byte) (*Config, error) {
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		for i, k := range keys {
			if near := nearestKey(k); near != "" {
				keys[i] = fmt.Sprintf("%s (did you mean %s?)", k, near)
			}
		}
		return nil, fmt.Errorf("unknown keys: %s (docs/config.md lists every key)", strings.Join(keys, ", "))
	}
	c.defaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) defaults() {
	if c.Mode == "" {
		c.Mode = Enforce
	}
	if c.Allowlist.Branch == "" {
		c.Allowlist.Branch = "main"
	}
	if c.Allowlist.Auth == "" {
		c.Allowlist.Auth = "none"
	}
	if c.Allowlist.Username == "" {
		c.Allowlist.Username = "oauth2"
	}
	if c.Allowlist.FetchTimeout.Duration == 0 {
		c.Allowlist.FetchTimeout.Duration = 30 * time.Second
	}
	if c.Trust.Threshold == 0 {
		c.Trust.Threshold = 1
	}
	if c.Paths.State == "" {
		c.Paths.State = "/var/lib/writ"
	}
	if c.Paths.Cache == "" {
		c.Paths.Cache = "/var/cache/writ"
	}
	if c.Paths.Audit == "" {
		c.Paths.Audit = "/var/log/writ/audit.log"
	}
	if c.Paths.Builds == "" {
		c.Paths.Builds = filepath.Join(c.Paths.State, "builds")
	}
	if c.Job.Shell == "" {
		c.Job.Shell = "/bin/bash"
	}
	if c.Job.Path == "" {
		c.Job.Path = "/usr/local/bin:/usr/bin:/bin"
	}
	if c.Job.Lang == "" {
		c.Job.Lang = "C.UTF-8"
	}
	if c.Job.DefaultTimeout.Duration == 0 {
		c.Job.DefaultTimeout.Duration = time.Hour
	}
	if c.Job.MaxPayloadBytes == 0 {
		c.Job.MaxPayloadBytes = 4 << 20
	}
	if c.Sandbox.UIDFirst == 0 {
		c.Sandbox.UIDFirst = 2000000000
	}
	if c.Sandbox.UIDCount == 0 {
		c.Sandbox.UIDCount = 1000
	}
	if c.Sandbox.PidsMax == 0 {
		c.Sandbox.PidsMax = 4096
	}
	if c.Sandbox.MemoryMaxBytes == 0 {
		c.Sandbox.MemoryMaxBytes = 4 << 30
	}
	if c.Sandbox.TmpSizeBytes == 0 {
		c.Sandbox.TmpSizeBytes = 1 << 30
	}
	if c.Sandbox.HostPaths == nil {
		c.Sandbox.HostPaths = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"}
	}
	if c.Sandbox.Hide == nil {
		c.Sandbox.Hide = []string{"/etc/gitlab-runner"}
	}
	if c.Sandbox.Images == "" {
		c.Sandbox.Images = "run"
	}
	if c.Sandbox.ImageMaxBytes == 0 {
		c.Sandbox.ImageMaxBytes = 8 << 30
	}
	if c.Fetch.MaxBytes == 0 {
		c.Fetch.MaxBytes = 1 << 30
	}
	if c.Fetch.MaxObjects == 0 {
		c.Fetch.MaxObjects = 1_000_000
	}
	if c.Fetch.MaxObjectBytes == 0 {
		c.Fetch.MaxObjectBytes = 100 << 20
	}
	if c.Fetch.MaxMirrorBytes == 0 {
		c.Fetch.MaxMirrorBytes = 4 << 30
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.State.Backend == "" {
		c.State.Backend = "local"
	}
	if c.State.Fallback == "" {
		c.State.Fallback = "none"
	}
	if c.State.Etcd.Prefix == "" {
		c.State.Etcd.Prefix = "/writ/" + c.Environment + "/"
	}
	if c.State.Etcd.Timeout.Duration == 0 {
		c.State.Etcd.Timeout.Duration = 5 * time.Second
	}
	if c.State.Etcd.JobClaimTTL.Duration == 0 {
		c.State.Etcd.JobClaimTTL.Duration = 7 * 24 * time.Hour
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	c.defaultsGitLab()
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !envName.MatchString(c.Environment) {
		bad("environment %q: set a name of letters, digits, '.', '_' or '-'", c.Environment)
	}
	if c.Mode != Enforce && c.Mode != Audit {
		bad("mode %q: use \"enforce\" or \"audit\"", c.Mode)
	}
	if c.Allowlist.URL == "" {
		bad("allowlist.url is required")
	}
	if c.Allowlist.Identity == "" {
		bad("allowlist.identity is required (the repository identity approvals bind)")
	}
	switch c.Allowlist.Auth {
	case "none":
	case "token-file":
		if c.Allowlist.TokenFile == "" {
			bad("allowlist.auth = \"token-file\" needs allowlist.token_file")
		}
	case "ssh-key":
		if c.Allowlist.SSHKeyFile == "" || c.Allowlist.KnownHostsFile == "" {
			bad("allowlist.auth = \"ssh-key\" needs allowlist.ssh_key_file and allowlist.known_hosts_file")
		}
	default:
		bad("allowlist.auth %q: use \"none\", \"token-file\" or \"ssh-key\"", c.Allowlist.Auth)
	}
	if c.Allowlist.MinVersion < 0 {
		bad("allowlist.min_version %d: use a version number (at least 1), or 0 for no floor", c.Allowlist.MinVersion)
	}
	if sc := c.Allowlist.StartCommit; sc != "" && !commitID.MatchString(sc) {
		bad("allowlist.start_commit %q: use a full commit id, 40 or 64 lower-case hex digits (git rev-parse HEAD)", sc)
	}
	if c.Trust.OpenPGPKeyring == "" && c.Trust.SSHAllowedSigners == "" {
		bad("trust: set openpgp_keyring or ssh_allowed_signers (the keys that sign allowlist commits)")
	}
	if c.Trust.Threshold < 1 {
		bad("trust.threshold must be at least 1")
	}
	if (len(c.Trust.SigstoreIdentities) > 0) != (c.Trust.SigstoreTrustedRoot != "") {
		bad("trust: sigstore_identities and sigstore_trusted_root go together (keyless approvals are verified against the pinned trusted root)")
	}
	if c.Job.MaxPayloadBytes < 1024 {
		bad("job.max_payload_bytes must be at least 1024")
	}
	if c.Fetch.MaxBytes < 1<<20 || c.Fetch.MaxObjectBytes < 1<<20 {
		bad("fetch.max_bytes and fetch.max_object_bytes must be at least 1048576 (1 MiB)")
	}
	if c.Fetch.MaxObjects < 1000 {
		bad("fetch.max_objects must be at least 1000")
	}
	if c.Fetch.MaxMirrorBytes < 2*c.Fetch.MaxBytes {
		bad("fetch.max_mirror_bytes must be at least twice fetch.max_bytes (%d), so one fetch fits a rebuilt mirror", c.Fetch.MaxBytes)
	}
	if c.Job.ServerURL != "" {
		if msg := checkServerURL(c.Job.ServerURL); msg != "" {
			bad("job.server_url %q %s", c.Job.ServerURL, msg)
		}
	}
	if c.Job.User != "" && !userName.MatchString(c.Job.User) {
		bad("job.user %q is not a user name", c.Job.User)
	}
	c.validateSandbox(bad)
	for k := range c.Job.Env {
		if !varName.MatchString(k) {
			bad("job.env key %q is not a variable name", k)
		}
	}
	c.validateState(bad)
	c.validateGitLab(bad)
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format %q: use \"text\" or \"json\"", c.Log.Format)
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("log.level %q: use \"trace\", \"debug\", \"info\", \"warn\" or \"error\"", c.Log.Level)
	}
	return errors.Join(errs...)
}

func (c *Config) validateSandbox(bad func(string, ...any)) {
	sb := c.Sandbox
	if sb.UnsafeNoSandbox {
		return
	}
	if c.Job.User != "" {
		bad("job.user %q: the sandbox runs each job as its own uid from sandbox.uid_first/uid_count, which replaces job.user; remove job.user (it applies only with sandbox.unsafe_no_sandbox = true)", c.Job.User)
	}
	if sb.UIDFirst < 65536 || uint64(sb.UIDFirst)+uint64(sb.UIDCount) > 1<<31 {
		bad("sandbox.uid_first %d, uid_count %d: choose a range above 65535 that ends below 2^31, used by no account", sb.UIDFirst, sb.UIDCount)
	}
	if sb.Images != "run" && sb.Images != "ignore" {
		bad("sandbox.images %q: use \"run\" (jobs run in their entry's image) or \"ignore\"", sb.Images)
	}
	if sb.PidsMax < -1 || sb.MemoryMaxBytes < -1 || sb.TmpSizeBytes < 0 || sb.ImageMaxBytes < 0 {
		bad("sandbox limits must be positive, or -1 for no limit")
	}
	for _, p := range sb.HostPaths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
			bad("sandbox.host_paths %q: name absolute directories other than /", p)
		}
		for _, w := range []string{c.Paths.Builds} {
			if w == p || strings.HasPrefix(w, p+"/") {
				bad("paths.builds %s lies inside sandbox.host_paths %s: jobs' build directories must be outside the host directories jobs see", w, p)
			}
		}
	}
	for _, p := range sb.Hide {
		if !filepath.IsAbs(p) {
			bad("sandbox.hide %q: name absolute paths", p)
		}
	}
}

func (c *Config) validateState(bad func(string, ...any)) {
	switch c.State.Fallback {
	case "none", "local":
	default:
		bad("state.fallback %q: use \"none\" or \"local\"", c.State.Fallback)
	}
	switch c.State.Backend {
	case "local":
		return
	case "etcd":
	default:
		bad("state.backend %q: use \"local\" or \"etcd\"", c.State.Backend)
		return
	}
	e := c.State.Etcd
	if len(e.Endpoints) == 0 {
		bad("state.backend = \"etcd\" needs state.etcd.endpoints")
	}
	for _, ep := range e.Endpoints {
		if !strings.HasPrefix(ep, "https://") {
			bad("state.etcd.endpoints: %q is not https:// (the store is reached over mutual TLS only)", ep)
		}
	}
	if e.CAFile == "" || e.CertFile == "" || e.KeyFile == "" {
		bad("state.backend = \"etcd\" needs state.etcd.ca_file, cert_file and key_file (mutual TLS, one client certificate per host)")
	}
	if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") {
		bad("state.etcd.prefix %q must start and end with /", e.Prefix)
	}
	if e.JobClaimTTL.Duration < time.Second {
		bad("state.etcd.job_claim_ttl must be at least 1s")
	}
}

func (c *Config) resolveRelative(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Allowlist.TokenFile)
	abs(&c.Allowlist.SSHKeyFile)
	abs(&c.Allowlist.KnownHostsFile)
	abs(&c.Trust.OpenPGPKeyring)
	abs(&c.Trust.SSHAllowedSigners)
	for i := range c.Trust.SigstorePublicKeys {
		abs(&c.Trust.SigstorePublicKeys[i])
	}
	abs(&c.Trust.SigstoreTrustedRoot)
	abs(&c.Paths.State)
	abs(&c.Paths.Cache)
	abs(&c.Paths.Audit)
	abs(&c.Paths.Builds)
	abs(&c.Log.File)
	abs(&c.State.Etcd.CAFile)
	abs(&c.State.Etcd.CertFile)
	abs(&c.State.Etcd.KeyFile)
}

// checkServerURL refuses a job.server_url a job should not see as
// GitLab's address: anything but http(s)://host[:port] with no path,
// credentials, query or fragment.
func checkServerURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a URL: write the GitLab instance's address, such as https://gitlab.example.com"
	case u.Scheme != "https" && u.Scheme != "http":
		return "must start with https:// (or http://)"
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") || u.Opaque != "":
		return "must hold no credentials, query or fragment"
	case u.Host == "" || u.Hostname() == "":
		return "names no host"
	case u.Path != "" && u.Path != "/":
		return "must have no path: write the instance's address only, such as https://gitlab.example.com"
	case strings.HasSuffix(s, "/"):
		return "must not end with /"
	}
	return ""
}
