package difftest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the zones below, whatever the host has installed

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// zones are the time zones every case runs under, for writ (time.Local)
// and for git, gpg and ssh-keygen (TZ). New York has daylight saving time
// in summer, where local-time readings of validity windows go wrong;
// Dublin's zone data marks winter as the saving time (a negative one), so
// git's reading of commit dates there is off the other way.
var zones = []string{"UTC", "America/New_York", "Europe/Dublin"}

// tcase is one case of the corpus.
type tcase struct {
	name string
	// accept says whether writ accepts the object (in every zone).
	accept bool
	// stricter, if set, is why writ refuses what the reference accepts in
	// at least one zone. It is listed in docs/testing.md.
	stricter string
	// build makes the case's object and trust material, once per run.
	build func(w *world) fixture
}

// fixture is what a case verifies: an object and the trust material.
type fixture struct {
	tag      bool
	hash     string
	signers  string   // allowed_signers file
	keyrings [][]byte // OpenPGP keyrings (armored, or as given)
}

// verdict is one side's judgement of a case in one zone.
type verdict struct {
	ok     bool
	detail string // error, or signer
	signer string // SSH principal or OpenPGP primary fingerprint
}

type result struct{ writ, ref verdict }

// TestDifferential judges every case with writ and with the reference
// tools, in every zone, and checks that writ is never more lenient.
func TestDifferential(t *testing.T) {
	if testing.Short() {
		t.Skip("the differential suite runs git, gpg and ssh-keygen; not in -short")
	}
	for _, tool := range []string{"git", "gpg", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/deps.sh installs it): %v", tool, err)
		}
	}
	for _, zone := range zones {
		// TZ names a file of the system's zone database; without it the
		// tools would run in UTC and the zones would not differ.
		if _, err := os.Stat(filepath.Join("/usr/share/zoneinfo", zone)); zone != "UTC" && err != nil {
			t.Fatalf("time zone %s is missing for git, gpg and ssh-keygen (scripts/deps.sh installs tzdata): %v", zone, err)
		}
	}
	start := time.Now()
	w := newWorld(t)
	cs := corpus()
	if len(cs) < 100 {
		t.Fatalf("corpus has %d cases, want at least 100", len(cs))
	}
	fixtures := make([]fixture, len(cs))
	names := map[string]bool{}
	for i, c := range cs {
		if names[c.name] {
			t.Fatalf("case %q twice", c.name)
		}
		names[c.name] = true
		fixtures[i] = c.build(w)
	}
	refs := newReferences(t, w, fixtures)
	built := time.Since(start)

	results := make(map[string][]result, len(zones))
	saved := time.Local
	t.Cleanup(func() { time.Local = saved })
	for _, zone := range zones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		// Set between groups of parallel subtests, never while one runs.
		time.Local = loc
		rs := make([]result, len(cs))
		results[zone] = rs
		t.Run(zone, func(t *testing.T) {
			for i, c := range cs {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					rs[i] = result{writ: judgeWrit(w, fixtures[i]), ref: refs[i].judge(t, zone)}
				})
			}
		})
		time.Local = saved
	}
	check(t, cs, results)
	t.Logf("%d cases x %d zones in %s (keys and objects %s)", len(cs), len(zones), time.Since(start).Round(time.Millisecond), built.Round(time.Millisecond))
}

// check applies the suite's rules to the results and keeps the table of
// stricter cases in docs/testing.md up to date.
func check(t *testing.T, cs []tcase, results map[string][]result) {
	var rows []string
	both, neither := 0, 0
	for i, c := range cs {
		var refOnly []string
		for _, zone := range zones {
			r := results[zone][i]
			switch {
			case r.writ.ok && !r.ref.ok:
				t.Errorf("%s [%s]: writ ACCEPTS what the reference rejects\n  writ: %s\n  reference: %s", c.name, zone, r.writ.detail, r.ref.detail)
			case !r.writ.ok && r.ref.ok:
				refOnly = append(refOnly, zone)
			case r.writ.ok && r.ref.ok:
				if r.writ.signer != r.ref.signer && !containsField(r.writ.signer, r.ref.signer) {
					t.Errorf("%s [%s]: writ reports signer %q, the reference %q", c.name, zone, r.writ.signer, r.ref.signer)
				}
			}
			// The issue-17 cases are ones writ once accepted while git
			// refused them in New York; they must stay such cases.
			if strings.Contains(c.name, "(issue 17)") && zone == "America/New_York" && r.ref.ok {
				t.Errorf("%s [%s]: the reference accepts it, so it no longer shows issue 17's disagreement", c.name, zone)
			}
			if r.writ.ok != c.accept {
				t.Errorf("%s [%s]: writ accepts=%v, want %v (%s)", c.name, zone, r.writ.ok, c.accept, r.writ.detail)
			}
		}
		switch {
		case len(refOnly) > 0 && c.stricter == "":
			t.Errorf("%s: writ refuses what the reference accepts in %s, and the case gives no reason\n  writ: %s\n  reference: %s",
				c.name, strings.Join(refOnly, ", "), results[refOnly[0]][i].writ.detail, results[refOnly[0]][i].ref.detail)
		case len(refOnly) == 0 && c.stricter != "":
			t.Errorf("%s: says writ is stricter (%s), but the reference does not accept it in any zone (%s)", c.name, c.stricter, results[zones[0]][i].ref.detail)
		case len(refOnly) > 0:
			rows = append(rows, fmt.Sprintf("| %s | %s | %s |", c.name, strings.Join(refOnly, ", "), c.stricter))
		}
		if results[zones[0]][i].writ.ok {
			both++
		} else if len(refOnly) == 0 {
			neither++
		}
	}
	sort.Strings(rows)
	table := fmt.Sprintf("%d cases under %s: both accept %d, both refuse %d, writ stricter %d.\n\n",
		len(cs), strings.Join(zones, ", "), both, neither, len(rows)) +
		"| case | the reference accepts in | why writ refuses |\n|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
	t.Logf("writ is stricter than the reference in %d cases:\n%s", len(rows), table)
	if !t.Failed() {
		checkDocs(t, table)
	}
}

func containsField(list, item string) bool {
	for _, f := range strings.Split(list, ",") {
		if f == item {
			return true
		}
	}
	return false
}

const (
	docsPath   = "../../../docs/testing.md"
	docsBegin  = "<!-- difftest:begin (generated by TestDifferential; WRIT_UPDATE_DOCS=1 rewrites it) -->\n"
	docsEnd    = "<!-- difftest:end -->\n"
	updateDocs = "WRIT_UPDATE_DOCS"
)

// checkDocs checks that docs/testing.md lists exactly the stricter cases
// the suite found, or rewrites the list when WRIT_UPDATE_DOCS=1.
func checkDocs(t *testing.T, table string) {
	doc, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(doc, []byte(docsBegin))
	j := bytes.Index(doc, []byte(docsEnd))
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q block", docsPath, docsBegin, docsEnd)
	}
	cur := string(doc[i+len(docsBegin) : j])
	if cur == table {
		return
	}
	if os.Getenv(updateDocs) == "1" {
		out := append(append(append([]byte{}, doc[:i+len(docsBegin)]...), table...), doc[j:]...)
		if err := os.WriteFile(docsPath, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the table in %s", docsPath)
		return
	}
	t.Errorf("the table of stricter cases in %s is out of date; run with %s=1 to rewrite it. Want:\n%s", docsPath, updateDocs, table)
}

// judgeWrit runs writ's path: allowed_signers parser, key set, verifier.
func judgeWrit(w *world, fx fixture) verdict {
	as, err := gitsig.ParseAllowedSigners([]byte(fx.signers))
	if err != nil {
		return verdict{detail: err.Error()}
	}
	keys, err := gitsig.NewKeys(fx.keyrings, as)
	if err != nil {
		return verdict{detail: err.Error()}
	}
	// A repository per call: go-git's object cache is not shared across
	// the parallel cases.
	repo, err := git.PlainOpen(w.repo.Path)
	if err != nil {
		return verdict{detail: "open: " + err.Error()}
	}
	// git judges an SSH validity window at the object's date only. writ
	// does that too for an object it admitted before, and for a new
	// decision also needs the key valid now (gitsig's own tests cover
	// that), which every window of this corpus, set in 2025, would fail.
	// SSH objects are therefore judged here as of their date, like the
	// reference; OpenPGP objects as new decisions, as gpg judges keys now.
	var opts []gitsig.VerifyOption
	if len(fx.keyrings) == 0 {
		opts = append(opts, gitsig.PreviouslyAdmitted())
	}
	var s gitsig.Signer
	if fx.tag {
		tag, err := repo.TagObject(plumbing.NewHash(fx.hash))
		if err != nil {
			return verdict{detail: "read tag: " + err.Error()}
		}
		s, err = keys.VerifyTag(tag, time.Now(), opts...)
		if err != nil {
			return verdict{detail: err.Error()}
		}
	} else {
		c, err := repo.CommitObject(plumbing.NewHash(fx.hash))
		if err != nil {
			return verdict{detail: "read commit: " + err.Error()}
		}
		s, err = keys.VerifyCommit(c, time.Now(), opts...)
		if err != nil {
			return verdict{detail: err.Error()}
		}
	}
	signer := s.Principal
	if s.Kind == gitsig.KindOpenPGP {
		signer = s.Fingerprint
	}
	return verdict{ok: true, detail: fmt.Sprintf("%s %s (%s)", s.Kind, s.Fingerprint, s.Principal), signer: signer}
}

// reference is a case's trust material as git reads it: an
// allowed_signers file and a GNUPGHOME holding the imported keyrings.
type reference struct {
	w       *world
	fx      fixture
	signers string
	gnupg   string
}

// newReferences makes the cases' reference trust material, importing the
// keyrings with as many gpg processes at once as there are CPUs.
func newReferences(t *testing.T, w *world, fxs []fixture) []*reference {
	dir := t.TempDir()
	refs := make([]*reference, len(fxs))
	errs := make([]error, len(fxs))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range fxs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			refs[i], errs[i] = newReference(w, fxs[i], filepath.Join(dir, fmt.Sprint(i)))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return refs
}

func newReference(w *world, fx fixture, dir string) (*reference, error) {
	r := &reference{w: w, fx: fx, signers: filepath.Join(dir, "allowed_signers"), gnupg: filepath.Join(dir, "g")}
	if err := os.MkdirAll(r.gnupg, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(r.signers, []byte(fx.signers), 0o600); err != nil {
		return nil, err
	}
	for _, k := range fx.keyrings {
		// A keyring gpg cannot import leaves it without the key; the
		// verification then fails, which is the reference's verdict.
		ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
		cmd := exec.CommandContext(ctx, "gpg", "--homedir", r.gnupg, "--batch", "--no-tty", "--import")
		cmd.Stdin = bytes.NewReader(k)
		_ = cmd.Run()
		cancel()
	}
	return r, nil
}

// toolTimeout bounds each run of git or gpg, so a tool waiting for input
// fails the suite instead of stalling make test.
const toolTimeout = time.Minute

var (
	sshGood  = regexp.MustCompile(`Good "git" signature for (.*) with `)
	validSig = regexp.MustCompile(`(?m)^\[GNUPG:\] VALIDSIG .* ([0-9A-F]{40,64})$`)
)

// judge runs git verify-commit or verify-tag with the case's trust
// material in zone.
func (r *reference) judge(t *testing.T, zone string) verdict {
	verb := "verify-commit"
	if r.fx.tag {
		verb = "verify-tag"
	}
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "-C", r.w.repo.Path, "-c", "gpg.ssh.allowedSignersFile="+r.signers, verb, "--raw", r.fx.hash)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + r.w.home,
		"GNUPGHOME=" + r.gnupg,
		"TZ=" + zone,
		"LANG=C",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
	}
	// git's own children (gpg, ssh-keygen) may hold the output open
	// after git is killed: stop waiting for them soon after.
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	detail := strings.TrimSpace(out.String())
	if ctx.Err() != nil {
		t.Fatalf("git %s did not finish in %s: %s", verb, toolTimeout, detail)
	}
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("git %s: %v", verb, err)
		}
		return verdict{detail: detail}
	}
	v := verdict{ok: true, detail: detail}
	if m := sshGood.FindStringSubmatch(detail); m != nil {
		v.signer = m[1]
	} else if m := validSig.FindStringSubmatch(detail); m != nil {
		v.signer = m[1]
	}
	return v
}

// The two validity cases named for issue 17 are the disagreements it
// reported: writ used to read a zone-less time as wall-clock time in the
// host's zone, which put both commits inside their windows in New York,
// while git refuses them there (the table in docs/testing.md lists the
// zones where the reference accepts them: not New York). writ now refuses
// such times.
func TestIssue17DSTCasesWereAcceptedBefore(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range issue17DST {
		old, err := time.ParseInLocation("200601021504", c.validAfter, ny)
		if err != nil {
			t.Fatal(err)
		}
		if c.commit.Before(old) {
			t.Errorf("%s: valid-after=%q read as %v: the commit at %v was outside the window even then", c.name, c.validAfter, old.UTC(), c.commit)
		}
	}
}
