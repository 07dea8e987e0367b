package state_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/internal/state"
)

func TestLocal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := state.NewLocal(dir)

	if st, err := l.Allowlist(ctx); st != nil || err != nil {
		t.Fatalf("empty state: %+v %v", st, err)
	}
	accept(t, l, 3, commit(3))
	if st, err := l.Allowlist(ctx); err != nil || st.Version != 3 || st.Commit != commit(3) {
		t.Fatalf("after accepting: %+v %v", st, err)
	}

	e, _ := l.Entry(ctx, "deploy")
	if e.Last != nil || e.Holds("https://git.example/app", commit(1)) {
		t.Fatalf("fresh entry: %+v", e)
	}
	if err := l.PutEntry(ctx, e, mark("deploy", commit(1))); err != nil {
		t.Fatal(err)
	}
	e, _ = l.Entry(ctx, "deploy")
	if !e.Holds("https://git.example/app", commit(1)) || e.Holds("https://git.example/app", commit(2)) {
		t.Fatalf("entry after a put: %+v", e)
	}

	t.Run("claims", func(t *testing.T) {
		c := state.JobClaim{ID: "12", Token: "run-1", Host: "h"}
		if err := l.ClaimJob(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := l.ClaimJob(ctx, c); err != nil {
			t.Fatalf("the same run claims again: %v", err)
		}
		var ce *state.ClaimedError
		if err := l.ClaimJob(ctx, state.JobClaim{ID: "12", Token: "run-2"}); !errors.As(err, &ce) || ce.Holder.Token != "run-1" {
			t.Fatalf("another run: %v", err)
		}
		if err := l.ReleaseJob(ctx, state.JobClaim{ID: "12", Token: "run-2"}); err != nil {
			t.Fatal(err)
		}
		if held, _ := l.Claim(ctx, "12"); held == nil {
			t.Fatal("another run's release removed the claim")
		}
		if err := l.ReleaseJob(ctx, c); err != nil {
			t.Fatal(err)
		}
		if held, _ := l.Claim(ctx, "12"); held != nil {
			t.Fatal("the claim outlived its release")
		}
		if err := l.ClaimJob(ctx, state.JobClaim{ID: "../x", Token: "t"}); err == nil {
			t.Fatal("a job id that is not digits was claimed")
		}
	})

	t.Run("corrupt files fail closed naming the repair", func(t *testing.T) {
		p := filepath.Join(dir, "entries", state.EntryKey("deploy")+".json")
		if err := os.WriteFile(p, []byte(`{"entry":"other","commit":"`+commit(1)+`"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Entry(ctx, "deploy"); !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "writ state repair") {
			t.Fatalf("entry file naming another entry: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "allowlist-state.json"), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Allowlist(ctx); !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "writ state repair") {
			t.Fatalf("truncated allowlist state: %v", err)
		}
	})
}
