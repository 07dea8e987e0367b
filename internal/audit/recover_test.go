package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testfault"
)

// tornAppend writes the first n bytes of what record seq would be, as a
// crash or a full disk in the middle of Append leaves it (the head file
// still names the record before).
func tornAppend(t *testing.T, l *Log, seq uint64, prev string, n int) []byte {
	t.Helper()
	_, line, err := seal(Record{Seq: seq, Event: "admit", Job: "torn", Reason: strings.Repeat("x", 200), Prev: prev, Time: fixedTime()})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(l.Path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(line[:n]); err != nil {
		t.Fatal(err)
	}
	return line[:n]
}

func fixedTime() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

func TestTornLastRecordIsRepairedOnAppend(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 9, 40, 200} {
		l, lines := buildLog(t, 3)
		var last Record
		if err := decodeStrict(lines[2], &last); err != nil {
			t.Fatal(err)
		}
		torn := tornAppend(t, l, 4, last.Hash, n)
		if _, err := VerifyFile(l.Path()); err == nil {
			t.Fatal("a torn log verifies")
		}
		got := mustAppend(t, l, Record{Event: "admit", Job: "after"})
		if got.Seq != 5 {
			t.Fatalf("the record after the repair is %d, want 5", got.Seq)
		}
		if n, err := VerifyFile(l.Path()); err != nil || n != 5 {
			t.Fatalf("after the repair: VerifyFile = %d, %v", n, err)
		}
		recs, err := readAllFile(l.Path())
		if err != nil {
			t.Fatal(err)
		}
		rec := recs[3]
		sum := sha256.Sum256(torn)
		if rec.Event != EventRecovered || rec.Prev != last.Hash ||
			rec.Fields["cut_sha256"] != hex.EncodeToString(sum[:]) || rec.Fields["cut_prefix"] != string(torn) {
			t.Fatalf("recovered record %+v does not name what was cut (%q)", rec, torn)
		}
		saved, err := os.ReadFile(rec.Fields["saved_to"].(string))
		if err != nil || string(saved) != string(torn) {
			t.Fatalf("torn bytes not kept: %q, %v", saved, err)
		}
	}
}

// Repair covers only what an interrupted append leaves; anything else is
// still reported, and the log is left as it was.
func TestTornTailThatIsNotAnAppendIsRefused(t *testing.T) {
	t.Parallel()
	l, lines := buildLog(t, 3)
	var last Record
	if err := decodeStrict(lines[2], &last); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(){
		"garbage tail": func() { appendRaw(t, l, []byte("garbage without a newline")) },
		"wrong seq":    func() { tornAppend(t, l, 7, last.Hash, 30) },
		"edited last record then a torn one": func() {
			writeLines(t, l.Path(), append(lines[:2:2], reseal(t, lines[2], func(r *Record) { r.Reason = "edited" })))
			tornAppend(t, l, 4, last.Hash, 30)
		},
	}
	for name, damage := range cases {
		writeLines(t, l.Path(), lines)
		damage()
		before, _ := os.ReadFile(l.Path())
		if _, err := l.Append(context.Background(), Record{Event: "admit"}); err == nil {
			t.Fatalf("%s: Append succeeded", name)
		}
		after, _ := os.ReadFile(l.Path())
		if string(before) != string(after) {
			t.Fatalf("%s: the refused log was changed", name)
		}
	}
}

func appendRaw(t *testing.T, l *Log, b []byte) {
	t.Helper()
	f, err := os.OpenFile(l.Path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// A full disk tears the record being written; once space is free again the
// next append repairs the log by itself.
func TestFullDiskTearsThenRecovers(t *testing.T) {
	t.Parallel()
	dir := testfault.SmallFS(t, 256<<10)
	l := Open(filepath.Join(dir, "audit.log"))
	mustAppend(t, l, Record{Event: "admit", Job: "1"})
	filler := testfault.Fill(t, dir)
	_, err := l.Append(context.Background(), Record{Event: "admit", Job: "2", Reason: strings.Repeat("y", 16<<10)})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v, want ENOSPC", err)
	}
	b, _ := os.ReadFile(l.Path())
	torn := len(b) > 0 && b[len(b)-1] != '\n'
	if !torn {
		t.Log("the full disk did not tear the record (it wrote nothing)")
	}
	// Still full: appends keep failing, and never make things worse.
	if _, err := l.Append(context.Background(), Record{Event: "admit", Job: "3"}); err == nil {
		t.Fatal("append on a full disk succeeded")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	got := mustAppend(t, l, Record{Event: "admit", Job: "4"})
	n, err := VerifyFile(l.Path())
	if err != nil || uint64(n) != got.Seq {
		t.Fatalf("after space was freed: VerifyFile = %d, %v (last seq %d)", n, err, got.Seq)
	}
	recs, _ := readAllFile(l.Path())
	events := []string{}
	for _, r := range recs {
		events = append(events, r.Event+":"+r.Job)
	}
	t.Logf("records after recovery: %v", events)
	if recs[0].Job != "1" || recs[len(recs)-1].Job != "4" || torn && recs[1].Event != EventRecovered {
		t.Fatalf("records lost or repair not recorded: %v", events)
	}
}

func readAllFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f)
}
