package main

import (
	"io"
	"os"
	"testing"

	"github.com/alecthomas/kong"
)

// TestExecutorFastPath: every command line the fast path takes is read by
// kong as the same command with the same config and arguments, and lines
// it does not fully understand are left to kong.
func TestExecutorFastPath(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		env   string
		unset bool
		take  bool
	}{
		{[]string{"--config", "/etc/writ/config.toml", "executor", "config"}, "", false, true},
		{[]string{"--config=/etc/writ/../writ/config.toml", "executor", "prepare"}, "", false, true},
		{[]string{"executor", "cleanup"}, "/etc/writ/config.toml", false, true},
		{[]string{"executor", "cleanup"}, "", true, true},
		{[]string{"executor", "cleanup"}, "", false, false},
		{[]string{"--config", "/etc/writ/config.toml", "executor", "run", "/tmp/script.sh", "build_script"}, "/other.toml", false, true},
		{[]string{"--config", "relative.toml", "executor", "config"}, "", false, false},
		{[]string{"executor", "config"}, "relative.toml", false, false},
		{[]string{"--config", "/c.toml", "executor", "run", "--", "build_script"}, "", false, false},
		{[]string{"--config", "/c.toml", "executor", "run", "/s", "-x"}, "", false, false},
		{[]string{"--config", "/c.toml", "executor", "run", "/s"}, "", false, false},
		{[]string{"--config", "/c.toml", "executor", "prepare", "extra"}, "", false, false},
		{[]string{"--log-level", "debug", "--config", "/c.toml", "executor", "prepare"}, "", false, false},
		{[]string{"--config", "/c.toml", "executor", "prepare", "--help"}, "", false, false},
		{[]string{"--config", "/c.toml", "executor", "bogus"}, "", false, false},
		{[]string{"--config", "/c.toml", "check", "--job", "/j"}, "", false, false},
	} {
		t.Setenv("WRIT_CONFIG", tc.env)
		if tc.unset {
			os.Unsetenv("WRIT_CONFIG")
		}
		a, ok := parseExecutorArgs(tc.args, os.LookupEnv)
		if ok != tc.take {
			t.Errorf("%q (WRIT_CONFIG=%q): fast path took it: %v, want %v", tc.args, tc.env, ok, tc.take)
			continue
		}
		if !ok {
			continue
		}
		var c cli
		parser, err := kong.New(&c, kong.Writers(io.Discard, io.Discard), kong.Exit(func(int) { t.Fatalf("%q: kong exited", tc.args) }))
		if err != nil {
			t.Fatal(err)
		}
		kctx, err := parser.Parse(tc.args)
		if err != nil {
			t.Errorf("%q: kong refuses what the fast path takes: %v", tc.args, err)
			continue
		}
		want := "executor " + a.stage
		if a.stage == "run" {
			want += " <script> <stage>"
		}
		if kctx.Command() != want || c.Config != a.config || c.Executor.Run.Script != a.script || c.Executor.Run.Stage != a.name {
			t.Errorf("%q: kong reads %q config %q run %q %q; the fast path %+v", tc.args, kctx.Command(), c.Config,
				c.Executor.Run.Script, c.Executor.Run.Stage, a)
		}
	}
}
