package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"gitlab.com/writ-ci/writ/internal/fsutil"
)

// BrokenError names the first record where the chain does not hold. The
// records before it are intact; it and everything after it are not
// trustworthy.
type BrokenError struct {
	// Line is the 1-based line number in the log.
	Line int
	// Seq is the record's seq as written, or the seq expected there when the
	// line does not decode or is missing.
	Seq uint64
	// Reason says what is wrong.
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit log broken at line %d (record %d): %s", e.Line, e.Seq, e.Reason)
}

// Report is the result of checking a log.
type Report struct {
	// Records is the number of good records before the first broken one.
	Records int
	// LastSeq and LastHash identify the last good record (0 and GenesisPrev
	// for an empty log).
	LastSeq  uint64
	LastHash string
	// Notes are observations that do not break the chain, such as a clock
	// that went backwards between two records.
	Notes []string
}

const maxNotes = 20

func (rep *Report) note(format string, a ...any) {
	switch {
	case len(rep.Notes) < maxNotes:
		rep.Notes = append(rep.Notes, fmt.Sprintf(format, a...))
	case len(rep.Notes) == maxNotes:
		rep.Notes = append(rep.Notes, "further notes omitted")
	}
}

// Verify reads the log and checks the chain; it returns the number of good
// records and, on failure, a *BrokenError naming the first broken record (line, seq, why).
func Verify(r io.Reader) (int, error) {
	rep, err := Check(r)
	return rep.Records, err
}

// Check is Verify with the full report. On failure the report covers the
// records before the broken one and the error is a *BrokenError, or a read
// error.
func Check(r io.Reader) (*Report, error) {
	return scan(r, nil)
}

// ReadAll decodes every record of the log, checking the chain as it goes. On
// failure it returns the records before the broken one with the error.
func ReadAll(r io.Reader) ([]Record, error) {
	var out []Record
	_, err := scan(r, func(rec Record) { out = append(out, rec) })
	return out, err
}

// Scan checks the chain as Check does and calls each for every good record
// in order, holding one record at a time, so a reader can filter a log of
// any size in bounded memory.
func Scan(r io.Reader, each func(Record)) (*Report, error) {
	return scan(r, each)
}

// VerifyFile is Verify on the log at path, and also compares the log with
// its head file if there is one, so records cut off the end are detected.
func VerifyFile(path string) (int, error) {
	rep, err := CheckFile(path)
	return rep.Records, err
}

// CheckFile is VerifyFile with the full report. It takes the log's shared
// lock so it does not see an append half done; if the lock file cannot be
// created (a read-only copy), it checks without it.
func CheckFile(path string) (*Report, error) {
	rep := &Report{LastHash: GenesisPrev}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	unlock, lerr := fsutil.RLock(ctx, lockPath(path))
	unlocked := false
	switch {
	case lerr == nil:
		defer unlock()
	case errors.Is(lerr, fs.ErrPermission) || errors.Is(lerr, syscall.EROFS):
		unlocked = true
	default:
		return rep, fmt.Errorf("audit log %s: %w", path, lerr)
	}

	h, herr := readHead(path)
	f, err := os.Open(path)
	if err != nil {
		return rep, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	var headHash, headPrev string
	var headLine int
	n := 0
	rep, err = scan(f, func(rec Record) {
		n++
		if h != nil && rec.Seq == h.Seq {
			headHash, headPrev, headLine = rec.Hash, rec.Prev, n
		}
	})
	if unlocked {
		rep.note("checked without the log's lock (%v): a concurrent append may show as an incomplete last line", lerr)
	}
	if err != nil {
		return rep, err
	}
	if herr != nil {
		return rep, fmt.Errorf("audit log %s: %w", path, herr)
	}
	switch {
	case h == nil:
		if rep.Records > 0 {
			rep.note("no head file %s: removal of records from the end cannot be detected", headPath(path))
		}
	case h.Seq > rep.LastSeq:
		return rep, &BrokenError{Line: rep.Records + 1, Seq: rep.LastSeq + 1,
			Reason: fmt.Sprintf("the log ends at record %d but its head file records %d records: records were removed from the end", rep.LastSeq, h.Seq)}
	case headHash != h.Hash:
		// The chain up to the replaced record is all that is good.
		rep.Records, rep.LastSeq, rep.LastHash = headLine-1, h.Seq-1, headPrev
		return rep, &BrokenError{Line: headLine, Seq: h.Seq,
			Reason: "the record differs from the one the head file recorded: it was replaced"}
	case h.Seq < rep.LastSeq:
		rep.note("the head file records record %d, %d behind the log's end: an append was interrupted after writing its record", h.Seq, rep.LastSeq-h.Seq)
	}
	return rep, nil
}

// scan checks the log line by line and calls each for every good record.
func scan(r io.Reader, each func(Record)) (*Report, error) {
	rep := &Report{LastHash: GenesisPrev}
	br := bufio.NewReaderSize(r, 64<<10)
	var prevTime time.Time
	for lineNo := 1; ; lineNo++ {
		want := rep.LastSeq + 1
		line, err := readLine(br)
		if err == io.EOF {
			return rep, nil
		}
		broken := func(seq uint64, format string, a ...any) (*Report, error) {
			return rep, &BrokenError{Line: lineNo, Seq: seq, Reason: fmt.Sprintf(format, a...)}
		}
		switch {
		case errors.Is(err, errIncomplete):
			return broken(want, "the last line has no newline: a write was interrupted, or the file was cut or edited")
		case errors.Is(err, errLineTooLong):
			return broken(want, "the line is longer than %d bytes", MaxLineBytes)
		case err != nil:
			return rep, err
		}
		rec, err := parseLine(line)
		if err != nil {
			return broken(guessSeq(line, want), "%v", err)
		}
		if rec.Seq != want {
			return broken(rec.Seq, "expected record %d here, found record %d: records were removed, reordered or inserted", want, rec.Seq)
		}
		if rec.Prev != rep.LastHash {
			return broken(rec.Seq, "its prev hash does not match the record before it: a record was replaced, removed or inserted")
		}
		if rec.Time.Before(prevTime) {
			rep.note("record %d (line %d) is timed %s, before the record preceding it (%s): the clock went backwards", rec.Seq, lineNo, rec.Time.Format(time.RFC3339Nano), prevTime.Format(time.RFC3339Nano))
		}
		prevTime = rec.Time
		rep.Records++
		rep.LastSeq, rep.LastHash = rec.Seq, rec.Hash
		if each != nil {
			each(rec)
		}
	}
}

var (
	errIncomplete  = errors.New("incomplete line")
	errLineTooLong = errors.New("line too long")
)

// readLine returns the next line without its newline, io.EOF at a clean end,
// errIncomplete for trailing bytes without a newline and errLineTooLong for a
// line over MaxLineBytes. It never holds more than MaxLineBytes+1 bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > MaxLineBytes+1 {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if len(line) == 0 {
				return nil, io.EOF
			}
			return nil, errIncomplete
		default:
			return nil, err
		}
	}
}

// parseLine decodes one line and checks that it is a canonical, correctly
// hashed record. It does not check the record's place in the chain.
func parseLine(line []byte) (Record, error) {
	if len(line) == 0 {
		return Record{}, errors.New("empty line")
	}
	var rec Record
	if err := decodeStrict(line, &rec); err != nil {
		return Record{}, fmt.Errorf("not a valid audit record: %v", err)
	}
	if rec.Time.Location() != time.UTC {
		return Record{}, errors.New("the record's time is not in UTC: it was edited")
	}
	canon, err := json.Marshal(rec)
	if err != nil {
		return Record{}, fmt.Errorf("not a valid audit record: %v", err)
	}
	if !bytes.Equal(canon, line) {
		return Record{}, errors.New("the record is not in writ's canonical encoding: it was edited")
	}
	body, err := json.Marshal(withoutHash(rec))
	if err != nil {
		return Record{}, err
	}
	sum := sha256.Sum256(body)
	if rec.Hash != hex.EncodeToString(sum[:]) {
		return Record{}, errors.New("its hash does not match its content: the record was changed after it was written")
	}
	return rec, nil
}

// guessSeq extracts a seq from a damaged line for the error message.
func guessSeq(line []byte, fallback uint64) uint64 {
	var s struct {
		Seq uint64 `json:"seq"`
	}
	if json.Unmarshal(line, &s) == nil && s.Seq != 0 {
		return s.Seq
	}
	return fallback
}
