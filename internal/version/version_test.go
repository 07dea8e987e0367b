package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	info := Info{Version: "dev"}
	fromBuildInfo(&info, &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "gitlab.com/writ-ci/writ", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-11-30T09:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	})
	if info.Version != "dev" || info.Commit != "0123456789abcdef0123456789abcdef01234567" || !info.Modified || info.Date != "2026-11-30T09:00:00Z" {
		t.Fatalf("%+v", info)
	}
	if got, want := info.String(), "dev (commit 0123456789ab+dirty)"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestPseudoVersionNamesCommitOnce(t *testing.T) {
	info := Info{Version: "v0.0.0-20261130090000-0123456789ab", Commit: "0123456789abcdef0123456789abcdef01234567"}
	if got := info.String(); got != info.Version {
		t.Fatalf("String() = %q", got)
	}
}

func TestLdflagsOverride(t *testing.T) {
	Version, Commit = "v1.2.3", "feedface"
	defer func() { Version, Commit = "", "" }()
	info := Get()
	if info.Version != "v1.2.3" || info.Commit != "feedface" || info.String() != "v1.2.3 (commit feedface)" {
		t.Fatalf("%+v %s", info, info)
	}
}
