// Package audit keeps writ's tamper-evident audit log: one JSON object per
// line, each record carrying the SHA-256 hash of the one before it.
//
// A record's Hash is the lowercase hex SHA-256 of the record's canonical
// JSON without the "hash" member; its Prev is the previous record's Hash
// (64 zeros for the first record), and Seq counts from 1 without gaps. The
// canonical JSON is what encoding/json produces for Record: members in the
// struct's field order, Fields keys sorted, the time in UTC RFC 3339 with
// nanoseconds, "<", ">" and "&" escaped, and no insignificant whitespace. A
// line is valid only if it is exactly that encoding, so any edit — even one
// that keeps the meaning, like reordering keys — breaks the chain.
//
// Next to the log, <log>.head holds the last record's Seq and Hash, so cutting
// records off the end is detectable as well.
//
// What the chain proves: an edit, insertion, deletion or reordering shows up
// at the first affected record unless the editor rewrites every later record
// and the head file too. The chain is not keyed, so anyone who can write the
// log can do that; against such an attacker, copy the log or its head off the
// machine (a log shipper) and compare.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// Record is one audit event.
type Record struct {
	Seq    uint64         `json:"seq"`
	Time   time.Time      `json:"time"`
	Event  string         `json:"event"` // "admit", "refuse", "audit-mode-admit", "stage", "outcome", "cleanup", "upload", "allowlist-accept", "allowlist-reject", "allowlist-cache", "recovered"
	Job    string         `json:"job,omitempty"`
	Env    string         `json:"environment,omitempty"`
	Reason string         `json:"reason,omitempty"`
	Fields map[string]any `json:"fields,omitempty"`
	Prev   string         `json:"prev"` // hex SHA-256 of the previous record's hash ("" → 64 zeros for the first)
	Hash   string         `json:"hash"` // hex SHA-256 over the record's canonical JSON without Hash
}

// hashedRecord is Record without Hash: its JSON is what Hash covers. The
// fields and tags must stay identical to Record's, in the same order.
type hashedRecord struct {
	Seq    uint64         `json:"seq"`
	Time   time.Time      `json:"time"`
	Event  string         `json:"event"`
	Job    string         `json:"job,omitempty"`
	Env    string         `json:"environment,omitempty"`
	Reason string         `json:"reason,omitempty"`
	Fields map[string]any `json:"fields,omitempty"`
	Prev   string         `json:"prev"`
}

// GenesisPrev is the Prev of the first record.
const GenesisPrev = "0000000000000000000000000000000000000000000000000000000000000000"

// Size bounds. Records are bounded so a hostile job name or error text cannot
// make the log unreadable, and readers can bound memory per line.
const (
	// MaxValueBytes bounds Reason and each Fields value (as JSON); longer
	// ones are cut and marked.
	MaxValueBytes = 64 << 10
	// maxShortBytes bounds Job and Env.
	maxShortBytes = 1 << 10
	// MaxLineBytes bounds one encoded record, newline excluded. A record
	// whose Fields would exceed it has them replaced by a marker.
	MaxLineBytes = 1 << 20
)

var errTooLong = fmt.Errorf("over the %d-byte line limit", MaxLineBytes)

// truncMarker is appended to a cut value, with the original size.
const truncMarker = "…[truncated by writ audit: %d bytes in total]"

var eventName = lazyre.New(`^[a-z][a-z0-9-]{0,63}$`)

// Log is an append-only audit log file.
type Log struct {
	path string
}

// Open returns the log at path. Nothing is touched until Append.
func Open(path string) *Log { return &Log{path: path} }

// Path is the log file's path.
func (l *Log) Path() string { return l.path }

// headPath is where the last record's seq and hash are kept.
func headPath(path string) string { return path + ".head" }

// lockPath is the lock every writer of path holds.
func lockPath(path string) string { return path + ".lock" }

// head is the content of the .head file.
type head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

const fileMode = 0o640

// Append fills Seq, Time (if zero), Prev and Hash under an exclusive file lock, so concurrent
// processes append safely, and writes exactly one line with O_APPEND + fsync.
//
// It reads only the log's last record. A last record torn by a crash or a
// full disk during an earlier Append is repaired first (see
// EventRecovered). If the last record is otherwise damaged, or the head
// file shows the log was cut or its last record replaced, Append refuses:
// writing after a broken record would bury the damage.
//
// Over-long values are cut to MaxValueBytes with a marker; Fields values are
// stored as their JSON. The returned Record is exactly what ReadAll will
// return for the line. An error after the line was made durable says so.
func (l *Log) Append(ctx context.Context, r Record) (Record, error) {
	if !eventName.MatchString(r.Event) {
		return Record{}, fmt.Errorf("audit: event %q is not a lower-case event name", r.Event)
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	// Round(0) drops the monotonic reading, which JSON does not keep.
	r.Time = r.Time.Round(0).UTC()
	if y := r.Time.Year(); y < 1 || y > 9999 {
		return Record{}, fmt.Errorf("audit: time %v is out of range", r.Time)
	}
	r.Job = truncate(r.Job, maxShortBytes)
	r.Env = truncate(r.Env, maxShortBytes)
	r.Reason = truncate(r.Reason, MaxValueBytes)
	r.Fields = boundFields(r.Fields)

	unlock, err := fsutil.Lock(ctx, lockPath(l.path))
	if err != nil {
		return Record{}, fmt.Errorf("audit log %s: %w", l.path, err)
	}
	defer unlock()

	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return Record{}, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()

	if err := l.repairTorn(f, r.Time); err != nil {
		return Record{}, fmt.Errorf("audit log %s: %w; refusing to append: run `writ audit verify %s`, investigate, then move the log and its .head file aside to start a new one", l.path, err, l.path)
	}
	last, err := lastRecord(f)
	if err != nil {
		return Record{}, fmt.Errorf("audit log %s: %w; refusing to append after a damaged record: run `writ audit verify %s`, investigate, then move the log and its .head file aside to start a new one", l.path, err, l.path)
	}
	if err := checkHead(l.path, last); err != nil {
		return Record{}, fmt.Errorf("audit log %s: %w; refusing to append: run `writ audit verify %s`, investigate, then move the log and its .head file aside to start a new one", l.path, err, l.path)
	}
	return l.write(f, last, r)
}

// write appends r after last (nil for an empty log) to the log open in f,
// under the log's lock, and moves the head file.
func (l *Log) write(f *os.File, last *Record, r Record) (Record, error) {
	r.Seq, r.Prev = 1, GenesisPrev
	if last != nil {
		r.Seq, r.Prev = last.Seq+1, last.Hash
	}

	sealed, line, err := seal(r)
	if errors.Is(err, errTooLong) && len(r.Fields) > 0 {
		// Keep the event and say what was lost rather than lose the record.
		r.Fields = map[string]any{"writ-fields-omitted": fmt.Sprintf("%d fields were too large for one audit record", len(r.Fields))}
		sealed, line, err = seal(r)
	}
	r = sealed
	if err != nil {
		return Record{}, fmt.Errorf("audit: %w", err)
	}
	line = append(line, '\n')
	// One write on an O_APPEND descriptor: the line lands whole at the end.
	if n, err := f.Write(line); err != nil || n != len(line) {
		if err == nil {
			err = io.ErrShortWrite
		}
		return Record{}, fmt.Errorf("audit log %s: write record %d: %w", l.path, r.Seq, err)
	}
	if err := f.Sync(); err != nil {
		return Record{}, fmt.Errorf("audit log %s: fsync record %d: %w", l.path, r.Seq, err)
	}
	hb, _ := json.Marshal(head{Seq: r.Seq, Hash: r.Hash})
	if err := fsutil.WriteFileAtomic(headPath(l.path), append(hb, '\n'), fileMode); err != nil {
		return r, fmt.Errorf("audit log %s: record %d was written but its head file was not updated: %w", l.path, r.Seq, err)
	}
	return r, nil
}

// EventRecovered is the event of the record Append writes when it repairs a
// log whose last record was torn (a crash or a full disk during a write).
const EventRecovered = "recovered"

// tornPrefixBytes bounds the torn bytes quoted in a recovered record; all
// of them are kept in a file next to the log.
const tornPrefixBytes = 4 << 10

// repairTorn repairs a log whose last line was cut off by a crash or a full
// disk during Append: the torn bytes are saved next to the log, cut off,
// and a "recovered" record naming them (size, SHA-256, the saved file, the
// first bytes) takes their place in the chain. It repairs only what an
// interrupted Append can leave: a tail without a newline, after an intact
// record the head file does not contradict, that begins as the next record
// would. Anything else is left for Append to refuse as damage.
func (l *Log) repairTorn(f *os.File, now time.Time) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	var one [1]byte
	if _, err := f.ReadAt(one[:], size-1); err != nil {
		return err
	}
	if one[0] == '\n' {
		return nil
	}
	start, err := lastLineStart(f, size)
	if err != nil || size-start > MaxLineBytes {
		return nil // not a torn record: Append reports the damage
	}
	torn := make([]byte, size-start)
	if _, err := f.ReadAt(torn, start); err != nil {
		return err
	}
	// The intact part must end at a good record the head does not say was
	// followed by another, and the torn bytes must begin as the next record.
	last, lerr := recordEndingAt(f, start)
	herr := checkHead(l.path, last)
	seq := uint64(1)
	if last != nil {
		seq = last.Seq + 1
	}
	want := []byte(fmt.Sprintf(`{"seq":%d,"time":"`, seq))
	n := min(len(torn), len(want))
	if lerr != nil || herr != nil || !bytes.Equal(torn[:n], want[:n]) {
		return nil // not what an interrupted append leaves: Append refuses
	}
	sum := sha256.Sum256(torn)
	saved := fmt.Sprintf("%s.torn-%d-%s", l.path, seq, hex.EncodeToString(sum[:4]))
	if err := fsutil.WriteFileAtomic(saved, torn, fileMode); err != nil {
		return fmt.Errorf("save the torn last record before repairing the log: %w", err)
	}
	if err := f.Truncate(start); err != nil {
		return fmt.Errorf("cut the torn last record (saved in %s): %w", saved, err)
	}
	_, err = l.write(f, last, Record{Event: EventRecovered, Time: now,
		Reason: "the last record was cut off by a crash or a full disk while it was written; writ cut it off and recorded it here",
		Fields: map[string]any{
			"cut_bytes":  len(torn),
			"cut_sha256": hex.EncodeToString(sum[:]),
			"cut_prefix": truncate(string(torn[:min(len(torn), tornPrefixBytes)]), tornPrefixBytes),
			"saved_to":   saved,
		}})
	if err != nil {
		// The log now ends at an intact record; the torn bytes are in saved.
		return fmt.Errorf("record the repair of a torn last record (saved in %s): %w", saved, err)
	}
	return nil
}

// seal normalises r through its own JSON, so the record returned is the one
// a reader decodes, and computes its Hash. It returns the sealed record and
// its line without the newline.
func seal(r Record) (Record, []byte, error) {
	body, err := json.Marshal(hashedRecord(withoutHash(r)))
	if err != nil {
		return Record{}, nil, err
	}
	// Decoding and re-encoding once makes Fields values generic (maps with
	// sorted keys, json.Number) and strings valid UTF-8, after which encoding
	// is stable: decode(line) encodes back to exactly line.
	var h hashedRecord
	if err := decodeStrict(body, &h); err != nil {
		return Record{}, nil, fmt.Errorf("normalise record: %w", err)
	}
	body, err = json.Marshal(h)
	if err != nil {
		return Record{}, nil, err
	}
	sum := sha256.Sum256(body)
	out := Record(withHash(h, hex.EncodeToString(sum[:])))
	line, err := json.Marshal(out)
	if err != nil {
		return Record{}, nil, err
	}
	if len(line) > MaxLineBytes {
		return Record{}, nil, fmt.Errorf("record %d is %d bytes: %w", r.Seq, len(line), errTooLong)
	}
	return out, line, nil
}

func withoutHash(r Record) hashedRecord {
	return hashedRecord{r.Seq, r.Time, r.Event, r.Job, r.Env, r.Reason, r.Fields, r.Prev}
}

func withHash(h hashedRecord, hash string) Record {
	return Record{h.Seq, h.Time, h.Event, h.Job, h.Env, h.Reason, h.Fields, h.Prev, hash}
}

// decodeStrict decodes exactly one JSON value into v: no unknown members,
// numbers kept as json.Number, nothing after the value.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// truncate cuts s to at most max bytes on a UTF-8 boundary and marks the cut.
func truncate(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf(truncMarker, len(s))
}

// boundFields replaces each value that does not encode, or encodes to more
// than MaxValueBytes, by a marked string.
func boundFields(in map[string]any) map[string]any {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]any, len(in))
	for k, v := range in {
		k = truncate(k, maxShortBytes)
		b, err := json.Marshal(v)
		switch {
		case err != nil:
			out[k] = fmt.Sprintf("[writ audit: value of type %T could not be encoded: %v]", v, err)
		case len(b) > MaxValueBytes:
			if s, ok := v.(string); ok {
				out[k] = truncate(s, MaxValueBytes)
			} else {
				out[k] = truncate(string(b), MaxValueBytes)
			}
		default:
			out[k] = v
		}
	}
	return out
}

// lastRecord returns the last record of the log open in f, or nil for an
// empty log. It reads backwards from the end, at most one line.
func lastRecord(f *os.File) (*Record, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return recordEndingAt(f, fi.Size())
}

// recordEndingAt returns the record whose line ends just before offset size
// (nil when size is 0).
func recordEndingAt(f *os.File, size int64) (*Record, error) {
	if size == 0 {
		return nil, nil
	}
	var one [1]byte
	if _, err := f.ReadAt(one[:], size-1); err != nil {
		return nil, err
	}
	if one[0] != '\n' {
		return nil, errors.New("the last line is incomplete (an interrupted write, or an edit)")
	}
	end := size - 1
	start, err := lastLineStart(f, end)
	if err != nil {
		return nil, err
	}
	if end-start > MaxLineBytes {
		return nil, fmt.Errorf("the last line is longer than %d bytes", MaxLineBytes)
	}
	line := make([]byte, end-start)
	if _, err := f.ReadAt(line, start); err != nil {
		return nil, err
	}
	r, err := parseLine(line)
	if err != nil {
		return nil, fmt.Errorf("the last record is damaged: %w", err)
	}
	return &r, nil
}

// lastLineStart returns the offset of the byte after the last '\n' before
// end (0 if there is none), reading backwards at most MaxLineBytes.
func lastLineStart(f *os.File, end int64) (int64, error) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	pos := end
	for pos > 0 {
		if end-pos > MaxLineBytes {
			return 0, fmt.Errorf("the last line is longer than %d bytes", MaxLineBytes)
		}
		n := min(int64(chunk), pos)
		if _, err := f.ReadAt(buf[:n], pos-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return pos - n + int64(i) + 1, nil
		}
		pos -= n
	}
	return 0, nil
}

// checkHead compares the head file with the log's last record. A missing
// head file is fine (a new log, or one from before head files), as is a head
// that lags behind (an append was interrupted after its record was durable);
// a head ahead of the log, or naming another last record, means records were
// removed or replaced.
func checkHead(path string, last *Record) error {
	h, err := readHead(path)
	if err != nil || h == nil {
		return err
	}
	var seq uint64
	if last != nil {
		seq = last.Seq
	}
	switch {
	case h.Seq > seq:
		return fmt.Errorf("the head file records %d records but the log ends at record %d: records were removed from the end", h.Seq, seq)
	case h.Seq == seq && h.Hash != last.Hash:
		return fmt.Errorf("the head file's hash for record %d differs from the log's: the last record was replaced", seq)
	}
	return nil
}

// readHead reads the head file next to path; nil if there is none.
func readHead(path string) (*head, error) {
	b, err := fsutil.ReadFileLimit(headPath(path), 4<<10)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read head file: %w", err)
	}
	var h head
	if !bytes.HasSuffix(b, []byte("\n")) || decodeStrict(bytes.TrimSuffix(b, []byte("\n")), &h) != nil || !isHash(h.Hash) || h.Seq == 0 {
		return nil, fmt.Errorf("head file %s is damaged", headPath(path))
	}
	return &h, nil
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
