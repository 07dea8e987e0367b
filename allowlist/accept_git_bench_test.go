package allowlist_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
)

// BenchmarkAcceptNewVersion10000 is BenchmarkAcceptNewVersion with a
// 10,000-entry allowlist whose new versions change only the version line,
// as test/scale's BenchmarkAcceptScale does with whole processes: it
// profiles acceptance in process (fetch, pack store, object reads, parse
// with the previous version's store).
func BenchmarkAcceptNewVersion10000(b *testing.B) {
	w := newWorld(b, worldOpts{})
	text := strings.Replace(string(allowlist.GeneratedAllowlist(10000)), "repository: acme/deploy-allowlist", "repository: "+identity, 1)
	text = strings.Replace(text, "expires: 2027-03-01T00:00:00Z", "expires: "+now.AddDate(1, 0, 0).Format(time.RFC3339), 1)
	if !strings.Contains(text, "\nversion: 1\n") {
		b.Fatal("generated allowlist has no version 1 line")
	}
	w.repo.Commit(b, map[string]string{"allowlist.yaml": text}, "v1", w.alice)
	a := w.accepter()
	if _, _, err := a.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	v := 1
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		v++
		next := strings.Replace(text, "\nversion: 1\n", fmt.Sprintf("\nversion: %d\n", v), 1)
		w.repo.Commit(b, map[string]string{"allowlist.yaml": next}, fmt.Sprintf("v%d", v), w.alice)
		b.StartTimer()
		_, rep, err := a.Refresh(context.Background())
		if err != nil || !rep.Accepted {
			b.Fatalf("refresh: %v %+v", err, rep)
		}
	}
}
