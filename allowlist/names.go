package allowlist

import "strings"

// Variable names that change how the job's programs start rather than what
// they are given. A variable so named, admitted with a value GitLab
// chooses, runs GitLab's code before or inside the signed script (BASH_ENV
// is sourced by every non-interactive bash; LD_PRELOAD loads a library into
// every process; GIT_SSH_COMMAND runs a command on fetch), so the parser
// and admission refuse such a name unless its entry says `dangerous: true`.
//
// Names are compared upper-cased: a few tools read lower-case forms too
// (http_proxy), and refusing both spellings fails closed.

// dangerousExact are dangerous names, each with why.
var dangerousExact = map[string]string{
	// Shells.
	"BASH_ENV":            "bash sources the file it names before any script",
	"ENV":                 "sh and bash in POSIX mode source the file it names",
	"SHELLOPTS":           "it turns on shell options in every bash",
	"BASHOPTS":            "it turns on shell options in every bash",
	"PS4":                 "bash expands it, running command substitutions, on every traced line",
	"PROMPT_COMMAND":      "bash runs it as a command",
	"IFS":                 "it changes how the shell splits every word",
	"CDPATH":              "it changes where cd goes",
	"GLOBIGNORE":          "it changes what globs match",
	"BASH_XTRACEFD":       "it redirects shell trace output to any file descriptor",
	"BASH_LOADABLES_PATH": "bash loads builtins from it",
	"EXECIGNORE":          "it changes which commands bash runs",
	"POSIXLY_CORRECT":     "it changes how shells and GNU tools behave",
	"PATH":                "it chooses which program every command runs",
	// The dynamic loader and C library.
	"GCONV_PATH":       "glibc loads conversion modules from it",
	"GLIBC_TUNABLES":   "it changes the C library's behaviour (and has been exploited)",
	"LOCPATH":          "glibc loads locale data from it",
	"NLSPATH":          "the C library loads message catalogs from it",
	"HOSTALIASES":      "it changes what host names resolve to",
	"RESOLV_HOST_CONF": "it changes how host names resolve",
	"TZDIR":            "the C library reads time zone files from it",
	// Git and the programs git runs.
	"XDG_CONFIG_HOME": "git and many tools read their configuration from it",
	"EDITOR":          "git and other tools run it as a command",
	"VISUAL":          "git and other tools run it as a command",
	"PAGER":           "git and other tools run it as a command",
	"SSH_ASKPASS":     "ssh runs it as a command",
	"SUDO_ASKPASS":    "sudo runs it as a command",
	// Language runtimes.
	"PERLLIB":             "perl loads modules from it",
	"PERL5LIB":            "perl loads modules from it",
	"PERL5OPT":            "perl takes command-line options from it",
	"RUBYOPT":             "ruby takes command-line options from it",
	"RUBYLIB":             "ruby loads code from it",
	"NODE_PATH":           "node loads modules from it",
	"CLASSPATH":           "java loads classes from it",
	"_JAVA_OPTIONS":       "the JVM takes options from it",
	"JAVA_TOOL_OPTIONS":   "the JVM takes options, including agents, from it",
	"JDK_JAVA_OPTIONS":    "the java launcher takes options from it",
	"NODE_EXTRA_CA_CERTS": "it adds certificate authorities node trusts",
	// TLS trust and proxies: who the job's network peers are.
	"SSL_CERT_FILE":      "it replaces the certificate authorities TLS clients trust",
	"SSL_CERT_DIR":       "it replaces the certificate authorities TLS clients trust",
	"CURL_CA_BUNDLE":     "it replaces the certificate authorities curl trusts",
	"REQUESTS_CA_BUNDLE": "it replaces the certificate authorities Python requests trusts",
	"HTTP_PROXY":         "it sends the job's HTTP traffic through a host it names",
	"HTTPS_PROXY":        "it sends the job's HTTPS traffic through a host it names",
	"ALL_PROXY":          "it sends the job's traffic through a host it names",
	"NO_PROXY":           "it changes which traffic bypasses the proxy",
	"FTP_PROXY":          "it sends the job's FTP traffic through a host it names",
}

// dangerousPrefixes are dangerous name prefixes, each with why.
var dangerousPrefixes = []struct{ prefix, why string }{
	{"LD_", "the dynamic loader reads LD_ variables (LD_PRELOAD loads a library into every process)"},
	{"DYLD_", "the dynamic loader reads DYLD_ variables"},
	{"BASH_FUNC_", "bash imports it as a function definition"},
	{"GIT_", "git reads GIT_ variables (GIT_SSH_COMMAND, GIT_CONFIG_*, GIT_EXEC_PATH run or configure commands)"},
	{"PYTHON", "python reads PYTHON variables at startup (PYTHONSTARTUP, PYTHONPATH, PYTHONHOME)"},
	{"MALLOC_", "the C library's allocator reads MALLOC_ variables"},
}

// dangerousSuffixes are dangerous name suffixes, each with why.
var dangerousSuffixes = []struct{ suffix, why string }{
	{"_OPTIONS", "runtimes read *_OPTIONS as command-line options (NODE_OPTIONS --require runs code)"},
	{"_OPTS", "tools read *_OPTS as command-line options (JAVA_OPTS, MAVEN_OPTS, GRADLE_OPTS)"},
}

// DangerousName reports why a variable name controls the loader, a shell,
// git or a language runtime, or "" when it does not. An entry admits such
// a variable only with `dangerous: true`. The list is documented in
// docs/allowlist.md.
func DangerousName(name string) string {
	u := strings.ToUpper(name)
	if why, ok := dangerousExact[u]; ok {
		return why
	}
	for _, p := range dangerousPrefixes {
		if strings.HasPrefix(u, p.prefix) {
			return p.why
		}
	}
	for _, s := range dangerousSuffixes {
		if strings.HasSuffix(u, s.suffix) {
			return s.why
		}
	}
	return ""
}

// ReservedName reports why writ itself sets a variable name in every job's
// environment, or GitLab defines it (see Predefined), or "" when neither
// does. No entry may admit a reserved name, dangerous or not: the job
// always sees writ's value, or none. A user variable that merely starts
// with CI_ or GITLAB_ is not reserved. The environment's job.env names are
// reserved too, but only the executor knows them.
func ReservedName(name string) string {
	switch {
	case name == "PATH" || name == "HOME" || name == "LANG":
		return "writ sets it from the runner host's configuration (job.path, job.home, job.lang)"
	case ProvidedSource(name) != "":
		return "writ sets it from verified data (" + ProvidedSource(name) + "); GitLab's value is dropped"
	case Predefined(name):
		return "it is a GitLab predefined variable, and GitLab's predefined variables never reach a job under writ"
	case strings.HasPrefix(name, "WRIT_"):
		return "writ sets WRIT_ variables"
	}
	return ""
}
