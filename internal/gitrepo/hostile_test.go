package gitrepo

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// packObject is one object of a crafted pack: its type, the size its
// header declares and its zlib data as sent.
type packObject struct {
	typ  byte
	size int64
	base []byte // 20-byte base of a ref-delta
	data []byte
}

// craftPack assembles a pack of objects with a correct trailer; count, if
// not negative, overrides the object count in the header.
func craftPack(count int64, objs ...packObject) []byte {
	var b bytes.Buffer
	b.WriteString("PACK")
	_ = binary.Write(&b, binary.BigEndian, uint32(2))
	if count < 0 {
		count = int64(len(objs))
	}
	_ = binary.Write(&b, binary.BigEndian, uint32(count))
	for _, o := range objs {
		size := o.size
		c := o.typ<<4 | byte(size&15)
		size >>= 4
		for size > 0 {
			b.WriteByte(c | 0x80)
			c = byte(size & 0x7f)
			size >>= 7
		}
		b.WriteByte(c)
		b.Write(o.base)
		b.Write(o.data)
	}
	sum := sha1.Sum(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

func deflate(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// zeros deflates n zero bytes without holding them in memory.
func zeros(t testing.TB, n int64) []byte {
	var b bytes.Buffer
	w, _ := zlib.NewWriterLevel(&b, zlib.BestCompression)
	chunk := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := w.Write(chunk[:k]); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rawObject is a whole object read from a real repository, for a crafted
// pack that holds real objects (a commit without its tree).
func rawObject(t *testing.T, r *testkeys.Repo, hash string) packObject {
	t.Helper()
	typ := strings.TrimSpace(r.Git(t, "cat-file", "-t", hash))
	data := []byte(r.Git(t, "cat-file", typ, hash))
	codes := map[string]byte{"commit": objCommit, "tree": objTree, "blob": objBlob, "tag": objTag}
	return packObject{typ: codes[typ], size: int64(len(data)), data: deflate(t, data)}
}

// hostile is a smart-HTTP git server on 127.0.0.1 that serves a real
// repository honestly (through git http-backend) until told otherwise.
type hostile struct {
	srv  *httptest.Server
	url  string
	mode atomic.Value // string
	// refs and pack serve a crafted answer in mode "pack".
	refs map[string]string
	pack []byte
	// cut is how many bytes of the honest pack answer "truncate" and
	// "stall-mid" let through.
	cut     int
	backend http.Handler
	done    chan struct{} // closed when the test ends: stalls stop
}

func newHostile(t testing.TB, r *testkeys.Repo) *hostile {
	t.Helper()
	h := &hostile{cut: 100_000, done: make(chan struct{})}
	h.mode.Store("honest")
	h.srv = gitHTTPServer(t, filepath.Dir(r.Path), func(next http.Handler) http.Handler {
		h.backend = next
		return http.HandlerFunc(h.serve)
	})
	h.url = httpURL(h.srv, r)
	t.Cleanup(func() { close(h.done) }) // runs before the server's Close
	return h
}

func (h *hostile) set(mode string) { h.mode.Store(mode) }

func (h *hostile) serve(w http.ResponseWriter, req *http.Request) {
	mode := h.mode.Load().(string)
	isPack := strings.HasSuffix(req.URL.Path, "/git-upload-pack")
	switch {
	case mode == "500":
		http.Error(w, "internal server error", http.StatusInternalServerError)
	case mode == "stall-before" && isPack:
		h.stall(req)
	case mode == "pack":
		h.servePack(w, req, isPack)
	case mode == "endless-refs" && strings.HasSuffix(req.URL.Path, "/info/refs"):
		serveEndlessRefs(w, req)
	case (mode == "truncate" || mode == "stall-mid") && isPack:
		cw := &cutWriter{ResponseWriter: w, left: h.cut}
		h.backend.ServeHTTP(cw, req)
		if mode == "stall-mid" {
			h.stall(req)
		}
	default:
		h.backend.ServeHTTP(w, req)
	}
}

func (h *hostile) stall(req *http.Request) {
	select {
	case <-req.Context().Done():
	case <-h.done:
	}
}

// servePack answers with the crafted refs and pack (no side band).
func (h *hostile) servePack(w http.ResponseWriter, req *http.Request, isPack bool) {
	if !isPack {
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		var b bytes.Buffer
		pkt(&b, "# service=git-upload-pack\n")
		b.WriteString("0000")
		first := true
		for name, hash := range h.refs {
			line := hash + " " + name
			if first {
				line += "\x00ofs-delta no-progress agent=hostile/1"
				first = false
			}
			pkt(&b, line+"\n")
		}
		b.WriteString("0000")
		_, _ = w.Write(b.Bytes())
		return
	}
	_, _ = io.Copy(io.Discard, req.Body)
	w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
	_, _ = w.Write([]byte("0008NAK\n"))
	_, _ = w.Write(h.pack)
}

func pkt(b *bytes.Buffer, s string) { fmt.Fprintf(b, "%04x%s", len(s)+4, s) }

// cutWriter lets left bytes of a response through and drops the rest.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	n := min(len(p), c.left)
	if n > 0 {
		_, _ = c.ResponseWriter.Write(p[:n])
		c.left -= n
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
	}
	if n < len(p) {
		return n, io.ErrShortWrite
	}
	return n, nil
}

const mainSpec = "+refs/heads/main:refs/writ/heads/main"

// assertClean checks that a refused fetch left no pack, temp pack or ref
// behind, and that the mirror's main ref is still want ("" for none).
func assertClean(t *testing.T, m *Mirror, want string) {
	t.Helper()
	tmps, _ := filepath.Glob(filepath.Join(m.Dir(), "objects", "pack", "tmp_*"))
	if len(tmps) > 0 {
		t.Errorf("temp packs left behind: %v", tmps)
	}
	got, err := m.Ref("refs/writ/heads/main")
	switch {
	case want == "" && err == nil:
		t.Errorf("ref written after a refused fetch: %s", got)
	case want != "" && (err != nil || got.String() != want):
		t.Errorf("ref %v (%v), want %s", got, err, want)
	}
}

// honestAgain: the next fetch from the now honest server brings the head,
// its tree and history.
func honestAgain(t *testing.T, h *hostile, m *Mirror, head string) {
	t.Helper()
	h.set("honest")
	if err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec); err != nil {
		t.Fatalf("fetch from the honest server again: %v", err)
	}
	assertClean(t, m, head)
	if err := m.CheckCommit(head); err != nil {
		t.Fatalf("mirror not complete after recovery: %v", err)
	}
}

func TestFetchRefusesBombPack(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 2)
	h := newHostile(t, r)
	m := mustMirror(t, h.url, Auth{})
	// A 2 GiB blob of zeros: only the first 64 KiB of its data are sent,
	// since the header alone must refuse it.
	h.refs = map[string]string{"refs/heads/main": hs[1]}
	h.pack = craftPack(-1, packObject{typ: objBlob, size: 2 << 30, data: zeros(t, 8<<20)[:4<<10]})
	h.set("pack")
	err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "max_object_bytes" {
		t.Fatalf("bomb pack: %v, want a max_object_bytes limit error", err)
	}
	wantErr(t, err, "exceeds the limit fetch.max_object_bytes = 104857600")
	assertClean(t, m, "")
	honestAgain(t, h, m, hs[1])
}

func TestFetchRefusesObjectInflatingBeyondItsHeader(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 1)
	h := newHostile(t, r)
	m := mustMirror(t, h.url, Auth{})
	h.refs = map[string]string{"refs/heads/main": hs[0]}
	h.pack = craftPack(-1, packObject{typ: objBlob, size: 1000, data: zeros(t, 16<<20)})
	h.set("pack")
	err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec)
	wantErr(t, err, "inflates beyond the 1000 bytes its header declares")
	assertClean(t, m, "")
	honestAgain(t, h, m, hs[0])
}

func TestFetchRefusesDeltaBuildingAHugeObject(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 1)
	h := newHostile(t, r)
	m := mustMirror(t, h.url, Auth{})
	// Delta data: base size 10, target size 2 GiB (varints), then nothing.
	delta := []byte{10, 0x80, 0x80, 0x80, 0x80, 0x08}
	h.refs = map[string]string{"refs/heads/main": hs[0]}
	h.pack = craftPack(-1,
		packObject{typ: objBlob, size: 10, data: deflate(t, []byte("0123456789"))},
		packObject{typ: objRefDelta, size: int64(len(delta)), base: make([]byte, 20), data: deflate(t, delta)})
	h.set("pack")
	err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec)
	wantErr(t, err, "size of the object delta 1 builds: 2147483648 exceeds the limit fetch.max_object_bytes")
	assertClean(t, m, "")
}

func TestFetchRefusesTooManyObjects(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 1)
	h := newHostile(t, r)
	m := mustMirror(t, h.url, Auth{})
	h.refs = map[string]string{"refs/heads/main": hs[0]}
	h.pack = craftPack(5_000_000)
	h.set("pack")
	err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec)
	wantErr(t, err, "objects in the pack: 5000000 exceeds the limit fetch.max_objects = 1000000")
	assertClean(t, m, "")
}

func TestFetchRefusesTooManyBytes(t *testing.T) {
	t.Parallel()
	r := testkeys.GitRepo(t)
	head := r.Commit(t, map[string]string{"noise.bin": noise(256 << 10)}, "big", nil)
	srv := gitHTTPServer(t, filepath.Dir(r.Path), nil)
	m, err := OpenMirror(t.TempDir(), httpURL(srv, r), Auth{}, WithLimits(Limits{MaxBytes: 64 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	err = m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec)
	wantErr(t, err, "exceeds the limit fetch.max_bytes = 65536")
	assertClean(t, m, "")
	// Within the default limits, the same fetch succeeds.
	m = mustMirror(t, httpURL(srv, r), Auth{})
	if err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec); err != nil {
		t.Fatal(err)
	}
	assertClean(t, m, head)
}

// noise is n incompressible bytes: a pack holding them spans several
// side-band packets, so a cut can fall in the middle of an object.
func noise(n int) string {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return string(b)
}

func TestFetchCommitWithoutTree(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 2)
	h := newHostile(t, r)
	m := mustMirror(t, h.url, Auth{})
	h.refs = map[string]string{"refs/heads/main": hs[1]}
	h.pack = craftPack(-1, rawObject(t, r, hs[1]))
	h.set("pack")
	err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("commit without tree: %v, want ErrIncomplete", err)
	}
	assertClean(t, m, "")
	// The commit object is in the mirror, yet the honest fetch repairs it.
	honestAgain(t, h, m, hs[1])
}

func TestFetchTruncatedPack(t *testing.T) {
	t.Parallel()
	r, _ := linearRepo(t, 2)
	head := r.Commit(t, map[string]string{"noise.bin": noise(256 << 10)}, "big", nil)
	h := newHostile(t, r)
	m := mustMirror(t, h.url, Auth{})
	h.set("truncate")
	err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec)
	if err == nil {
		t.Fatal("truncated pack accepted")
	}
	wantErr(t, err, "the pack is truncated (in the data of object")
	assertClean(t, m, "")
	honestAgain(t, h, m, head)
}

func TestFetchRemoteFaults(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 2)
	h := newHostile(t, r)
	m := mustMirror(t, h.url, Auth{})
	honestAgain(t, h, m, hs[1])
	newer := r.Commit(t, map[string]string{"noise.bin": noise(256 << 10)}, "newer", nil)
	for _, mode := range []string{"500", "stall-before", "stall-mid"} {
		h.set(mode)
		start := time.Now()
		err := m.Fetch(ctxTimeout(t, time.Second), mainSpec)
		if err == nil {
			t.Fatalf("%s: fetch succeeded", mode)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%s: took %v", mode, d)
		}
		t.Logf("%s: %v", mode, err)
		if mode == "stall-mid" && !strings.Contains(err.Error(), "data of object") {
			t.Errorf("stall-mid did not stall mid-pack: %v", err)
		}
		assertClean(t, m, hs[1]) // the old value stays; nothing half-written
	}
	// Connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dead := mustMirror(t, "http://"+addr+"/x.git", Auth{})
	if err := dead.Fetch(ctxTimeout(t, 5*time.Second), mainSpec); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("connection refused: %v", err)
	}
	honestAgain(t, h, m, newer)
}

// The served repository's HEAD points at a commit no ref points at: only
// the named ref matters.
func TestFetchDetachedHEAD(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 2)
	r.Git(t, "checkout", "-q", "--detach")
	loose := r.Commit(t, map[string]string{"d.txt": "x"}, "detached", nil)
	if strings.TrimSpace(r.Git(t, "rev-parse", "HEAD")) != loose {
		t.Fatal("HEAD is not detached at the new commit")
	}
	srv := gitHTTPServer(t, filepath.Dir(r.Path), nil)
	m := mustMirror(t, httpURL(srv, r), Auth{})
	if err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec); err != nil {
		t.Fatalf("fetch with a detached HEAD on the server: %v", err)
	}
	assertClean(t, m, hs[1])
}

// Damage on disk: each is repaired by the next fetch, without a hand.
func TestFetchHealsDamagedMirror(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 3)
	srv := gitHTTPServer(t, filepath.Dir(r.Path), nil)
	url := httpURL(srv, r)
	cache := t.TempDir()
	open := func() *Mirror {
		m, err := OpenMirror(cache, url, Auth{})
		if err != nil {
			t.Fatalf("open a damaged mirror: %v", err)
		}
		return m
	}
	m := open()
	if err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(m.Dir(), "refs", "writ", "heads", "main")
	packs := func() []string {
		p, _ := filepath.Glob(filepath.Join(m.Dir(), "objects", "pack", "*.pack"))
		return p
	}
	damage := map[string]func(){
		"empty ref":   func() { must(t, os.WriteFile(ref, nil, 0o600)) },
		"garbage ref": func() { must(t, os.WriteFile(ref, []byte("not a hash\n"), 0o600)) },
		"corrupt pack": func() {
			for _, p := range packs() {
				data, err := os.ReadFile(p)
				must(t, err)
				for i := 12; i < len(data)-20; i += 7 {
					data[i] ^= 0x5a
				}
				must(t, os.WriteFile(p, data, 0o600))
			}
		},
		"missing pack": func() {
			for _, p := range packs() {
				must(t, os.Remove(p))
			}
		},
		"garbage config": func() { must(t, os.WriteFile(filepath.Join(m.Dir(), "config"), []byte("[[[\x00"), 0o600)) },
		"marked damaged": func() { m.MarkDamaged("a reader found a missing object") },
	}
	for _, name := range []string{"empty ref", "garbage ref", "corrupt pack", "missing pack", "garbage config", "marked damaged"} {
		damage[name]()
		m = open()
		if err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec); err != nil {
			t.Fatalf("%s: the next fetch did not repair the mirror: %v", name, err)
		}
		assertClean(t, m, hs[2])
		for _, h := range hs {
			if err := m.CheckCommit(h); err != nil {
				t.Fatalf("%s: after repair: %v", name, err)
			}
		}
	}
}

// A mirror over its disk bound is rebuilt with only the fetched refs.
func TestFetchBoundsMirrorOnDisk(t *testing.T) {
	t.Parallel()
	r, _ := linearRepo(t, 2)
	srv := gitHTTPServer(t, filepath.Dir(r.Path), nil)
	m, err := OpenMirror(t.TempDir(), httpURL(srv, r), Auth{}, WithLimits(Limits{MaxMirrorBytes: 1}))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		head := r.Commit(t, map[string]string{"f.txt": fmt.Sprint("v", i)}, "more", nil)
		if err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec); err != nil {
			t.Fatal(err)
		}
		assertClean(t, m, head)
	}
	if m.Rebuilt() < 3 {
		t.Fatalf("mirror over its bound rebuilt %d times, want every fetch", m.Rebuilt())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A blob whose content on disk no longer hashes to its name (a damaged
// cache) never reaches the build directory or a decision.
func TestReadAndCheckoutVerifyBlobHashes(t *testing.T) {
	t.Parallel()
	r := testkeys.GitRepo(t)
	head := r.Commit(t, map[string]string{"a.txt": "hello\n"}, "one", nil)
	blob := strings.TrimSpace(r.Git(t, "rev-parse", head+":a.txt"))
	obj := filepath.Join(r.Path, ".git", "objects", blob[:2], blob[2:])
	must(t, os.Chmod(obj, 0o600))
	must(t, os.WriteFile(obj, deflate(t, []byte("blob 6\x00HELLO\n")), 0o600))
	m := localMirror(t, filepath.Join(r.Path, ".git"))
	if _, err := m.ReadFile(head, "a.txt", 1<<10); !errors.Is(err, ErrDamaged) || !IsDamage(err) {
		t.Fatalf("ReadFile of a damaged blob: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "co")
	if err := m.Checkout(head, dir); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Checkout of a damaged blob: %v", err)
	}
}

// emptyBlocks is a zlib stream of n empty stored deflate blocks: it takes
// 5n bytes and inflates to nothing.
func emptyBlocks(n int) []byte {
	b := []byte{0x78, 0x01}
	for range n {
		b = append(b, 0x00, 0x00, 0x00, 0xff, 0xff)
	}
	return append(b, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1)
}

// Bytes that inflate to nothing are handed on or refused as they come,
// never piled up in memory.
// Not parallel: it measures the heap.
func TestFetchEmptyDeflateBlocksStayBounded(t *testing.T) {
	r, hs := linearRepo(t, 1)
	h := newHostile(t, r)
	h.refs = map[string]string{"refs/heads/main": hs[0]}
	for _, tc := range []struct {
		obj  packObject
		want string
	}{
		{packObject{typ: objBlob, size: 0, data: emptyBlocks(2 << 20)}, "incomplete"},
		{packObject{typ: objRefDelta, size: 6, base: make([]byte, 20), data: emptyBlocks(2 << 20)}, "sizes were not found"},
	} {
		h.pack = craftPack(-1, tc.obj)
		h.set("pack")
		m := mustMirror(t, h.url, Auth{})
		var err error
		peak := peakHeap(func() { err = m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec) })
		wantErr(t, err, tc.want)
		if peak > 16<<20 {
			t.Fatalf("a 10 MB pack of empty blocks took %d MiB", peak>>20)
		}
		assertClean(t, m, "")
	}
}

// serveEndlessRefs answers info/refs with a well-formed list of refs that
// never ends (until the client hangs up or 1 GiB has gone).
func serveEndlessRefs(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
	pkt := func(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }
	io.WriteString(w, pkt("# service=git-upload-pack\n")+"0000")
	io.WriteString(w, pkt(strings.Repeat("a", 40)+" HEAD\x00multi_ack side-band-64k ofs-delta\n"))
	for i := 0; i < 1<<24 && req.Context().Err() == nil; i++ {
		if _, err := io.WriteString(w, pkt(fmt.Sprintf("%040x refs/heads/b%09d\n", i, i))); err != nil {
			return
		}
	}
}

// TestFetchRefusesEndlessRefList: a server's list of refs is read with a
// bound, before any of it is kept; the honest server is fetched again.
func TestFetchRefusesEndlessRefList(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 2)
	h := newHostile(t, r)
	m := mustMirror(t, h.url, Auth{})
	honestAgain(t, h, m, hs[1])
	h.set("endless-refs")
	err := m.Fetch(ctxTimeout(t, 60*time.Second), mainSpec)
	if !errors.Is(err, ErrAdvertisementTooLarge) {
		t.Fatalf("fetch from a server with an endless list of refs: %v", err)
	}
	if _, err := m.RemoteRef(ctxTimeout(t, 60*time.Second), "refs/heads/main"); !errors.Is(err, ErrAdvertisementTooLarge) {
		t.Fatalf("peek at a server with an endless list of refs: %v", err)
	}
	assertClean(t, m, hs[1])
	honestAgain(t, h, m, hs[1])
}
