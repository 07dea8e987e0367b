package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/fsutil"
)

const helperEnv = "WRIT_AUDIT_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "append" {
		// Append HELPER_N records to HELPER_LOG as writer HELPER_WRITER.
		n, _ := strconv.Atoi(os.Getenv("HELPER_N"))
		if err := appendN(Open(os.Getenv("HELPER_LOG")), os.Getenv("HELPER_WRITER"), n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func appendN(l *Log, writer string, n int) error {
	for i := range n {
		_, err := l.Append(context.Background(), Record{Event: "stage", Job: writer, Fields: map[string]any{"writer": writer, "i": i}})
		if err != nil {
			return err
		}
	}
	return nil
}

func newLog(t testing.TB) *Log {
	t.Helper()
	return Open(filepath.Join(t.TempDir(), "audit.log"))
}

func mustAppend(t testing.TB, l *Log, r Record) Record {
	t.Helper()
	out, err := l.Append(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("log does not end with a newline")
	}
	return bytes.Split(b[:len(b)-1], []byte("\n"))
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	var buf bytes.Buffer
	for _, l := range lines {
		buf.Write(l)
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAppendChain(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	in := []Record{
		{Event: "allowlist-accept", Env: "prod", Fields: map[string]any{"version": int64(7), "digest": strings.Repeat("ab", 32)}},
		{Event: "admit", Job: "1234", Env: "prod", Time: t0, Fields: map[string]any{"entry": "deploy", "big": uint64(1) << 60, "ratio": 0.1, "nested": map[string]any{"b": []int{1, 2}, "a": true}}},
		{Event: "refuse", Job: "1235", Env: "prod", Reason: "job script differs from entry deploy"},
		{Event: "outcome", Job: "1234", Fields: map[string]any{"struct": struct {
			Z string `json:"z"`
			A int    `json:"a"`
		}{"last", 1}}},
	}
	var out []Record
	for _, r := range in {
		out = append(out, mustAppend(t, l, r))
	}
	for i, r := range out {
		if r.Seq != uint64(i+1) {
			t.Errorf("record %d: seq %d", i, r.Seq)
		}
		wantPrev := GenesisPrev
		if i > 0 {
			wantPrev = out[i-1].Hash
		}
		if r.Prev != wantPrev {
			t.Errorf("record %d: prev %s, want %s", i, r.Prev, wantPrev)
		}
		if r.Time.Location() != time.UTC || r.Time.IsZero() {
			t.Errorf("record %d: time %v is not a UTC time", i, r.Time)
		}
	}
	if !out[1].Time.Equal(t0) {
		t.Errorf("explicit time changed: %v, want %v", out[1].Time, t0)
	}

	f, err := os.Open(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	// What Append returns is exactly what a reader decodes.
	if !reflect.DeepEqual(got, out) {
		t.Fatalf("ReadAll differs from what Append returned:\n got %#v\nwant %#v", got, out)
	}
	if n, err := VerifyFile(l.Path()); err != nil || n != len(in) {
		t.Fatalf("VerifyFile = %d, %v; want %d, nil", n, err, len(in))
	}
	hb, err := os.ReadFile(l.Path() + ".head")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"seq":4,"hash":"%s"}`+"\n", out[3].Hash); string(hb) != want {
		t.Fatalf("head file = %q, want %q", hb, want)
	}
	fi, err := os.Stat(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o027 != 0 {
		t.Errorf("log mode %v is group-writable or world-readable", fi.Mode().Perm())
	}
}

// TestHashDefinition recomputes each hash from the documented definition,
// independently of the package's code: SHA-256 of the line without its
// "hash" member.
func TestHashDefinition(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	for i := range 3 {
		mustAppend(t, l, Record{Event: "stage", Job: strconv.Itoa(i), Reason: "a <b> & \"c\"", Fields: map[string]any{"z": 1, "a": "x"}})
	}
	prev := GenesisPrev
	for i, line := range readLines(t, l.Path()) {
		idx := bytes.LastIndex(line, []byte(`,"hash":"`))
		if idx < 0 || !bytes.HasSuffix(line, []byte(`"}`)) {
			t.Fatalf("line %d has no trailing hash member: %s", i+1, line)
		}
		hash := string(line[idx+len(`,"hash":"`) : len(line)-2])
		body := append(append([]byte{}, line[:idx]...), '}')
		sum := sha256.Sum256(body)
		if hash != hex.EncodeToString(sum[:]) {
			t.Fatalf("line %d: hash %s is not SHA-256 of %s", i+1, hash, body)
		}
		if !bytes.Contains(line, []byte(`"prev":"`+prev+`"`)) {
			t.Fatalf("line %d does not chain to %s", i+1, prev)
		}
		if !bytes.HasPrefix(line, []byte(fmt.Sprintf(`{"seq":%d,"time":"`, i+1))) {
			t.Fatalf("line %d does not start with its seq: %s", i+1, line)
		}
		// Fields keys are sorted.
		if !bytes.Contains(line, []byte(`"fields":{"a":"x","z":1}`)) {
			t.Fatalf("line %d: fields not in canonical order: %s", i+1, line)
		}
		prev = hash
	}
}

func TestNoRawNewlinesAndRoundTrip(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	nasty := "line1\nline2\r\n\u2028\u2029\x00\x1b[31m"
	r := mustAppend(t, l, Record{Event: "refuse", Job: nasty, Env: "e\nv", Reason: nasty, Fields: map[string]any{"k\ney": nasty}})
	mustAppend(t, l, Record{Event: "refuse", Reason: "invalid utf-8: \xff\xfe"})
	lines := readLines(t, l.Path())
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: raw newlines got through", len(lines))
	}
	f, _ := os.Open(l.Path())
	defer f.Close()
	got, err := ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Reason != nasty || got[0].Job != nasty || got[0].Fields["k\ney"] != nasty || !reflect.DeepEqual(got[0], r) {
		t.Fatalf("round trip changed the record: %#v", got[0])
	}
	if !utf8Valid(got[1].Reason) || !strings.HasPrefix(got[1].Reason, "invalid utf-8: ") {
		t.Fatalf("invalid UTF-8 not replaced: %q", got[1].Reason)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "?") == s }

func TestSizeBounds(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	long := strings.Repeat("é", MaxValueBytes) // 2 bytes each: twice the bound
	r := mustAppend(t, l, Record{Event: "refuse", Reason: long, Job: long, Fields: map[string]any{
		"str":    long,
		"list":   []string{long, long},
		"small":  "ok",
		"broken": make(chan int),
	}})
	if len(r.Reason) > MaxValueBytes+100 || !strings.Contains(r.Reason, "[truncated by writ audit: 131072 bytes in total]") {
		t.Errorf("reason not cut and marked: %d bytes, ends %q", len(r.Reason), r.Reason[len(r.Reason)-60:])
	}
	if !utf8Valid(r.Reason) {
		t.Error("cut split a UTF-8 sequence")
	}
	if len(r.Job) > 1<<10+100 {
		t.Errorf("job not cut: %d bytes", len(r.Job))
	}
	if s, ok := r.Fields["str"].(string); !ok || len(s) > MaxValueBytes+100 {
		t.Errorf("string field not cut")
	}
	if s, ok := r.Fields["list"].(string); !ok || !strings.Contains(s, "truncated") {
		t.Errorf("list field not replaced by a cut string: %T", r.Fields["list"])
	}
	if s, ok := r.Fields["broken"].(string); !ok || !strings.Contains(s, "could not be encoded") {
		t.Errorf("unencodable field not replaced: %v", r.Fields["broken"])
	}
	if r.Fields["small"] != "ok" {
		t.Errorf("small field changed")
	}

	// Many fields, each under the bound but together over a line: the record
	// is kept, its fields replaced by a marker.
	many := map[string]any{}
	for i := range 40 {
		many[strconv.Itoa(i)] = strings.Repeat("x", MaxValueBytes-10)
	}
	r2 := mustAppend(t, l, Record{Event: "stage", Fields: many})
	if _, ok := r2.Fields["writ-fields-omitted"]; !ok || len(r2.Fields) != 1 {
		t.Errorf("oversized fields not replaced by a marker: %d fields", len(r2.Fields))
	}
	// The worst case of escaping still fits a line.
	r3 := mustAppend(t, l, Record{Event: "stage", Reason: strings.Repeat("<\x01", MaxValueBytes)})
	_ = r3
	if n, err := VerifyFile(l.Path()); err != nil || n != 3 {
		t.Fatalf("VerifyFile = %d, %v", n, err)
	}
}

func TestEventValidated(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	for _, ev := range []string{"", "Admit", "admit\n", "a b", strings.Repeat("a", 65)} {
		if _, err := l.Append(context.Background(), Record{Event: ev}); err == nil {
			t.Errorf("event %q accepted", ev)
		}
	}
	if _, err := os.Stat(l.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rejected records created the log")
	}
}

// buildLog writes a log of n records and returns its lines.
func buildLog(t *testing.T, n int) (*Log, [][]byte) {
	t.Helper()
	l := newLog(t)
	for i := range n {
		mustAppend(t, l, Record{Event: "admit", Job: strconv.Itoa(100 + i), Reason: "r" + strconv.Itoa(i), Fields: map[string]any{"i": i}})
	}
	return l, readLines(t, l.Path())
}

// reseal re-encodes a record with a correct hash for its (edited) content,
// as an attacker who knows the format would.
func reseal(t *testing.T, line []byte, edit func(*Record)) []byte {
	t.Helper()
	var r Record
	if err := decodeStrict(line, &r); err != nil {
		t.Fatal(err)
	}
	edit(&r)
	body, _ := json.Marshal(withoutHash(r))
	sum := sha256.Sum256(body)
	r.Hash = hex.EncodeToString(sum[:])
	out, _ := json.Marshal(r)
	return out
}

func TestTamperDetection(t *testing.T) {
	t.Parallel()
	const n = 6
	type tamper struct {
		name     string
		edit     func(t *testing.T, lines [][]byte) [][]byte
		line     int    // first broken line
		seq      uint64 // its seq
		reason   string // part of the reason
		fileOnly bool   // only VerifyFile (with the head file) sees it
	}
	cases := []tamper{
		{name: "edit a field", line: 3, seq: 3, reason: "hash does not match",
			edit: func(t *testing.T, l [][]byte) [][]byte {
				l[2] = bytes.Replace(l[2], []byte(`"reason":"r2"`), []byte(`"reason":"ok"`), 1)
				return l
			}},
		{name: "edit a field and recompute its hash", line: 4, seq: 4, reason: "prev hash does not match",
			edit: func(t *testing.T, l [][]byte) [][]byte {
				l[2] = reseal(t, l[2], func(r *Record) { r.Event = "refuse" })
				return l
			}},
		{name: "re-encode without changing meaning", line: 2, seq: 2, reason: "canonical",
			edit: func(t *testing.T, l [][]byte) [][]byte {
				l[1] = bytes.Replace(l[1], []byte(`,"event"`), []byte(`, "event"`), 1)
				return l
			}},
		{name: "duplicate key", line: 5, seq: 5, reason: "canonical",
			edit: func(t *testing.T, l [][]byte) [][]byte {
				l[4] = append([]byte(`{"event":"x",`), l[4][1:]...)
				return l
			}},
		{name: "unknown member", line: 2, seq: 2, reason: "not a valid audit record",
			edit: func(t *testing.T, l [][]byte) [][]byte {
				l[1] = append([]byte(`{"extra":1,`), l[1][1:]...)
				return l
			}},
		{name: "time in another zone", line: 2, seq: 2, reason: "UTC",
			edit: func(t *testing.T, l [][]byte) [][]byte {
				l[1] = reseal(t, l[1], func(r *Record) { r.Time = r.Time.In(time.FixedZone("X", 3600)) })
				return l
			}},
		{name: "delete a line", line: 3, seq: 4, reason: "expected record 3",
			edit: func(t *testing.T, l [][]byte) [][]byte { return append(l[:2:2], l[3:]...) }},
		{name: "delete the first line", line: 1, seq: 2, reason: "expected record 1",
			edit: func(t *testing.T, l [][]byte) [][]byte { return l[1:] }},
		{name: "reorder", line: 3, seq: 4, reason: "expected record 3",
			edit: func(t *testing.T, l [][]byte) [][]byte { l[2], l[3] = l[3], l[2]; return l }},
		{name: "insert a copy", line: 3, seq: 2, reason: "expected record 3",
			edit: func(t *testing.T, l [][]byte) [][]byte {
				return append(l[:2:2], append([][]byte{l[1]}, l[2:]...)...)
			}},
		{name: "insert a forged record", line: 4, seq: 3, reason: "expected record 4",
			edit: func(t *testing.T, l [][]byte) [][]byte {
				forged := reseal(t, l[2], func(r *Record) { r.Reason = "forged" })
				return append(l[:2:2], append([][]byte{forged}, l[2:]...)...)
			}},
		{name: "insert garbage", line: 2, seq: 2, reason: "not a valid audit record",
			edit: func(t *testing.T, l [][]byte) [][]byte {
				return append(l[:1:1], append([][]byte{[]byte("hello")}, l[1:]...)...)
			}},
		{name: "insert an empty line", line: 2, seq: 2, reason: "empty line",
			edit: func(t *testing.T, l [][]byte) [][]byte {
				return append(l[:1:1], append([][]byte{{}}, l[1:]...)...)
			}},
		{name: "truncate the tail", line: 5, seq: 5, reason: "removed from the end", fileOnly: true,
			edit: func(t *testing.T, l [][]byte) [][]byte { return l[:4] }},
		{name: "truncate everything", line: 1, seq: 1, reason: "removed from the end", fileOnly: true,
			edit: func(t *testing.T, l [][]byte) [][]byte { return nil }},
		{name: "replace the last record", line: 6, seq: 6, reason: "replaced", fileOnly: true,
			edit: func(t *testing.T, l [][]byte) [][]byte {
				l[5] = reseal(t, l[5], func(r *Record) { r.Reason = "nothing to see" })
				return l
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, lines := buildLog(t, n)
			writeLines(t, l.Path(), tc.edit(t, lines))
			check := func(what string, got int, err error) {
				t.Helper()
				var be *BrokenError
				if !errors.As(err, &be) {
					t.Fatalf("%s: err = %v, want a *BrokenError", what, err)
				}
				if be.Line != tc.line || be.Seq != tc.seq || !strings.Contains(be.Reason, tc.reason) {
					t.Fatalf("%s: broken at line %d seq %d (%s), want line %d seq %d (%q)", what, be.Line, be.Seq, be.Reason, tc.line, tc.seq, tc.reason)
				}
				if got != tc.line-1 {
					t.Fatalf("%s: %d good records, want %d", what, got, tc.line-1)
				}
			}
			f, err := os.Open(l.Path())
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := Verify(f)
			if tc.fileOnly {
				// Without the head file the shortened log is a valid log:
				// exactly why the head file exists.
				if err != nil {
					t.Fatalf("Verify without head: %v", err)
				}
			} else {
				check("Verify", got, err)
			}
			got, err = VerifyFile(l.Path())
			check("VerifyFile", got, err)

			// Append refuses to extend a log whose end is damaged, and leaves
			// it as it was. (Damage in the middle is for Verify to find.)
			if tc.line >= len(readLines(t, l.Path())) {
				before, _ := os.ReadFile(l.Path())
				_, err := l.Append(context.Background(), Record{Event: "admit"})
				if err == nil || !strings.Contains(err.Error(), "writ audit verify") {
					t.Fatalf("Append after damage: err = %v, want a refusal naming `writ audit verify`", err)
				}
				after, _ := os.ReadFile(l.Path())
				if !bytes.Equal(before, after) {
					t.Fatal("refused Append changed the log")
				}
			}
		})
	}
}

func TestIncompleteLastLine(t *testing.T) {
	t.Parallel()
	l, _ := buildLog(t, 3)
	b, _ := os.ReadFile(l.Path())
	if err := os.WriteFile(l.Path(), b[:len(b)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := VerifyFile(l.Path())
	var be *BrokenError
	if !errors.As(err, &be) || be.Line != 3 || be.Seq != 3 || !strings.Contains(be.Reason, "no newline") || n != 2 {
		t.Fatalf("VerifyFile = %d, %v", n, err)
	}
	_, err = l.Append(context.Background(), Record{Event: "admit"})
	if err == nil || !strings.Contains(err.Error(), "incomplete") || !strings.Contains(err.Error(), "writ audit verify") {
		t.Fatalf("Append after an interrupted write: %v", err)
	}
}

// TestHeadLag: a crash between writing a record and its head leaves the
// head one behind; that is not tampering and appends continue.
func TestHeadLag(t *testing.T) {
	t.Parallel()
	l, lines := buildLog(t, 3)
	var r Record
	if err := decodeStrict(lines[1], &r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.Path()+".head", []byte(fmt.Sprintf(`{"seq":2,"hash":"%s"}`+"\n", r.Hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := CheckFile(l.Path())
	if err != nil || rep.Records != 3 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "interrupted") {
		t.Fatalf("CheckFile = %+v, %v", rep, err)
	}
	mustAppend(t, l, Record{Event: "admit"})
	if n, err := VerifyFile(l.Path()); err != nil || n != 4 {
		t.Fatalf("VerifyFile = %d, %v", n, err)
	}
	// A lagging head with the wrong hash names the replaced record.
	if err := os.WriteFile(l.Path()+".head", []byte(fmt.Sprintf(`{"seq":2,"hash":"%s"}`+"\n", strings.Repeat("0", 64))), 0o600); err != nil {
		t.Fatal(err)
	}
	var be *BrokenError
	if _, err := VerifyFile(l.Path()); !errors.As(err, &be) || be.Line != 2 || be.Seq != 2 {
		t.Fatalf("VerifyFile with a wrong lagging head: %v", err)
	}
	// A damaged head file is an error for both.
	if err := os.WriteFile(l.Path()+".head", []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyFile(l.Path()); err == nil || !strings.Contains(err.Error(), "head file") {
		t.Fatalf("VerifyFile with a damaged head: %v", err)
	}
	if _, err := l.Append(context.Background(), Record{Event: "admit"}); err == nil {
		t.Fatal("Append with a damaged head file succeeded")
	}
}

func TestClockBackwardsIsANote(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	now := time.Now()
	mustAppend(t, l, Record{Event: "admit", Time: now})
	mustAppend(t, l, Record{Event: "admit", Time: now.Add(-time.Hour)})
	rep, err := CheckFile(l.Path())
	if err != nil || rep.Records != 2 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "clock went backwards") {
		t.Fatalf("CheckFile = %+v, %v", rep, err)
	}
}

// TestLastRecordAcrossChunks: Append reads the last line backwards in
// chunks; lines longer than a chunk must be found whole.
func TestLastRecordAcrossChunks(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	mustAppend(t, l, Record{Event: "admit"})
	big := strings.Repeat("<", MaxValueBytes) // escapes to 6 bytes each: a ~384 KiB line
	mustAppend(t, l, Record{Event: "admit", Reason: big})
	mustAppend(t, l, Record{Event: "admit", Reason: big})
	mustAppend(t, l, Record{Event: "admit"})
	mustAppend(t, l, Record{Event: "admit", Reason: big})
	r := mustAppend(t, l, Record{Event: "admit"})
	if r.Seq != 6 {
		t.Fatalf("seq %d, want 6", r.Seq)
	}
	if n, err := VerifyFile(l.Path()); err != nil || n != 6 {
		t.Fatalf("VerifyFile = %d, %v", n, err)
	}
}

func TestOverlongLineIsBroken(t *testing.T) {
	t.Parallel()
	l, lines := buildLog(t, 2)
	lines = append(lines, bytes.Repeat([]byte("x"), MaxLineBytes+10))
	writeLines(t, l.Path(), lines)
	var be *BrokenError
	if _, err := VerifyFile(l.Path()); !errors.As(err, &be) || be.Line != 3 || !strings.Contains(be.Reason, "longer") {
		t.Fatalf("VerifyFile: %v", err)
	}
	if _, err := l.Append(context.Background(), Record{Event: "admit"}); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Fatalf("Append after an overlong line: %v", err)
	}
}

// TestConcurrentAppend: goroutines of this process and other processes
// append at once; the result is one valid chain holding every record once.
func TestConcurrentAppend(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	const goroutines, procs, each = 16, 4, 8
	var wg sync.WaitGroup
	errs := make(chan error, goroutines+procs)
	for g := range goroutines {
		wg.Go(func() { errs <- appendN(l, "g"+strconv.Itoa(g), each) })
	}
	for p := range procs {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=append", "HELPER_LOG="+l.Path(),
			"HELPER_WRITER=p"+strconv.Itoa(p), "HELPER_N="+strconv.Itoa(each))
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("helper process: %v: %s", err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := (goroutines + procs) * each; len(recs) != want {
		t.Fatalf("%d records, want %d", len(recs), want)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		key := fmt.Sprint(r.Fields["writer"], "/", r.Fields["i"])
		if seen[key] {
			t.Fatalf("record %s written twice", key)
		}
		seen[key] = true
	}
	if n, err := VerifyFile(l.Path()); err != nil || n != len(recs) {
		t.Fatalf("VerifyFile = %d, %v", n, err)
	}
}

func TestAppendContextCancelledWhileLocked(t *testing.T) {
	t.Parallel()
	l, _ := buildLog(t, 1)
	// Hold the writers' lock as another process would.
	unlock, err := lockForTest(l)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := l.Append(ctx, Record{Event: "admit"}); err == nil || !strings.Contains(err.Error(), "another writ process") {
		t.Fatalf("Append while locked: %v", err)
	}
}

func BenchmarkAppend(b *testing.B) {
	l := newLog(b)
	r := Record{Event: "admit", Job: "123456", Env: "prod", Reason: "matched entry deploy", Fields: map[string]any{"project": "group/app", "commit": strings.Repeat("a", 40)}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	l := newLog(b)
	for range 1000 {
		mustAppend(b, l, Record{Event: "admit", Job: "123456", Env: "prod", Fields: map[string]any{"project": "group/app"}})
	}
	data, err := os.ReadFile(l.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if n, err := Verify(bytes.NewReader(data)); err != nil || n != 1000 {
			b.Fatal(n, err)
		}
	}
}

func lockForTest(l *Log) (func() error, error) {
	return fsutil.Lock(context.Background(), lockPath(l.Path()))
}
