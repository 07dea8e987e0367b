package allowlist

import (
	"os"
	"strings"
	"testing"
)

func TestDangerousName(t *testing.T) {
	t.Parallel()
	for _, n := range []string{
		"BASH_ENV", "ENV", "LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "BASH_FUNC_echo%%", "SHELLOPTS", "BASHOPTS",
		"PS4", "PROMPT_COMMAND", "IFS", "GIT_SSH_COMMAND", "GIT_CONFIG_COUNT", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS",
		"_JAVA_OPTIONS", "MAVEN_OPTS", "PYTHONSTARTUP", "PYTHONPATH", "PERL5OPT", "RUBYOPT", "https_proxy",
		"GLIBC_TUNABLES", "XDG_CONFIG_HOME", "SSL_CERT_FILE", "DYLD_INSERT_LIBRARIES",
	} {
		if DangerousName(n) == "" {
			t.Errorf("%s is not dangerous", n)
		}
	}
	for _, n := range []string{"DEPLOY_TARGET", "RELEASE", "KUBECONFIG", "NOTIFY", "OPTIONS_FILE", "MY_PATH", "ENVIRONMENT", "GITHUB_TOKEN", "LDAP_URL"} {
		if why := DangerousName(n); why != "" {
			t.Errorf("%s is dangerous: %s", n, why)
		}
	}
}

func TestReservedName(t *testing.T) {
	t.Parallel()
	for _, n := range []string{"PATH", "HOME", "LANG", "CI", "CI_COMMIT_TAG", "CI_DEBUG_TRACE", "GITLAB_USER_LOGIN", "WRIT_ENTRY", "WRIT_ANYTHING"} {
		if ReservedName(n) == "" {
			t.Errorf("%s is not reserved", n)
		}
	}
	for _, n := range []string{"path", "CIX", "GITLAB", "WRIT", "DEPLOY_TARGET", "LANGUAGE"} {
		if why := ReservedName(n); why != "" {
			t.Errorf("%s is reserved: %s", n, why)
		}
	}
}

// TestDocsListDangerousNames: docs/allowlist.md names every dangerous
// name, prefix and suffix, and shows the migration message as lint prints
// it, so the documentation cannot drift from the code.
func TestDocsListDangerousNames(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile("../docs/allowlist.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(md)
	for n := range dangerousExact {
		if !strings.Contains(doc, "`"+n+"`") {
			t.Errorf("docs/allowlist.md does not list %s", n)
		}
	}
	for _, p := range dangerousPrefixes {
		if !strings.Contains(doc, "`"+p.prefix+"*`") {
			t.Errorf("docs/allowlist.md does not list %s*", p.prefix)
		}
	}
	for _, s := range dangerousSuffixes {
		if !strings.Contains(doc, "`*"+s.suffix+"`") {
			t.Errorf("docs/allowlist.md does not list *%s", s.suffix)
		}
	}
	if !strings.Contains(doc, "allowlist.yaml:1:9: "+migrationMessage+"\n") {
		t.Error("docs/allowlist.md does not show the migration message as lint prints it")
	}
}

func TestCheckRef(t *testing.T) {
	t.Parallel()
	for _, r := range []string{"refs/heads/main", "refs/tags/v1.4.0", "refs/heads/release/2.x", "refs/tags/main", "refs/heads/HEADS"} {
		if msg := CheckRef(r); msg != "" {
			t.Errorf("%s refused: %s", r, msg)
		}
	}
	for _, r := range []string{"main", "heads/main", "tags/v1", "refs/heads/", "refs/heads/main^{}", "refs/heads/main~0", "refs/heads/main^",
		"refs/heads/main@{1}", "refs/heads/heads/main", "refs/tags/tags/v1", "refs/heads/refs/heads/x", "refs/heads/remotes/origin/main",
		"refs/heads/HEAD", "refs/tags/FETCH_HEAD", "refs/remotes/origin/main", "refs/merge-requests/1/head", "refs/pipelines/1",
		"refs/heads/a..b", "refs/heads/a.lock", "refs/heads/-x", "refs/heads/a b", "refs/heads/a:b", "refs/heads/a*"} {
		if CheckRef(r) == "" {
			t.Errorf("%s accepted", r)
		}
	}
}

func TestJobRef(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ refType, ref, want string }{
		{"branch", "main", "refs/heads/main"},
		{"tag", "main", "refs/tags/main"},
		{"tag", "v1.4.0", "refs/tags/v1.4.0"},
	} {
		if got, err := JobRef(c.refType, c.ref); err != nil || got != c.want {
			t.Errorf("JobRef(%q, %q) = %q, %v", c.refType, c.ref, got, err)
		}
	}
	for _, c := range []struct{ refType, ref string }{
		{"", "main"}, {"Branch", "main"}, {"merge_request", "main"}, {"branch", ""}, {"branch", "main^{}"},
		{"branch", "heads/main"}, {"tag", "refs/tags/v1"}, {"branch", "HEAD"}, {"tag", "v1~1"},
	} {
		if got, err := JobRef(c.refType, c.ref); err == nil {
			t.Errorf("JobRef(%q, %q) = %q, want an error", c.refType, c.ref, got)
		}
	}
}

// TestDangerousMarkerWarnsOnHarmlessName: dangerous: true where it is not
// needed is a warning, not an error.
func TestDangerousMarkerWarnsOnHarmlessName(t *testing.T) {
	t.Parallel()
	_, warns, err := Lint(FileName, []byte(edited(addAfter(18, "      variables:", "        REGION: {value: eu, dangerous: true}"))), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || warns[0].Line != 20 || !strings.Contains(warns[0].Msg, "variable REGION is marked dangerous: true but is not on writ's list") {
		t.Fatalf("warnings %v", warns)
	}
}
