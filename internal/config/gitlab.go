package config

import (
	"net"
	"net/url"
	"time"
)

// GitLab is the GitLab instance this runner serves, as the runner's own
// config.toml names it. writ talks to it only to upload what an admitted
// entry's uploads name: never to a URL from the job payload, which GitLab
// controls.
type GitLab struct {
	// URL of the GitLab instance (the url of the runner's [[runners]]
	// section), https:// (http:// only on a loopback address). Without
	// it, jobs whose entry has uploads are refused at admission.
	URL string `toml:"url"`
	// UploadTimeout bounds one artifact upload.
	UploadTimeout Duration `toml:"upload_timeout"`
}

func (c *Config) defaultsGitLab() {
	if c.GitLab.UploadTimeout.Duration == 0 {
		c.GitLab.UploadTimeout.Duration = 10 * time.Minute
	}
}

func (c *Config) validateGitLab(bad func(string, ...any)) {
	if c.GitLab.URL == "" {
		return
	}
	// The same address rules as job.server_url, and https: writ sends the
	// job token there.
	msg := checkServerURL(c.GitLab.URL)
	u, _ := url.Parse(c.GitLab.URL)
	switch {
	case msg != "":
		bad("gitlab.url %q %s", c.GitLab.URL, msg)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		bad("gitlab.url %q: use https:// (writ sends the job token there); http:// is allowed only on a loopback address", c.GitLab.URL)
	}
	if c.GitLab.UploadTimeout.Duration < time.Second {
		bad("gitlab.upload_timeout must be at least 1s")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
