package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// DemoEnv, set to 1, runs TestDemo (`make demo`).
const DemoEnv = "WRIT_DEMO"

// demoAttacks are the catalog scenarios the demo tells, in order (the
// rollback last: it resets the allowlist branch).
var demoAttacks = []struct {
	scenario string
	title    string
	story    string
}{
	{"script-invisible-bidi-characters", "Script tampering with invisible characters",
		"GitLab appends a command to the deploy script, hidden between invisible Unicode\n" +
			"bidirectional isolates (U+2067 … U+2069): a bidi-aware viewer shows the line as\n" +
			"the allowlisted one."},
	{"var-bash-env", "Variable injection: BASH_ENV",
		"GitLab adds a file variable BASH_ENV holding code. The script is untouched, but\n" +
			"every bash the deploy starts would source the file."},
	{"repo-url-attacker-fork", "Source substitution: the attacker's fork",
		"GitLab points repo_url at the attacker's fork (evil/app), at an unsigned commit\n" +
			"whose deploy.sh carries a backdoor. Script, variables and image are untouched."},
	{"allowlist-rollback", "Allowlist rollback",
		"GitLab resets the allowlist repository to version 6: genuinely signed and\n" +
			"approved once, and it still allowed a debug script, which is the attacker's code."},
}

// demoOut prints the demo's story, in colour on a terminal.
type demoOut struct {
	w     io.Writer
	color bool
}

func (d *demoOut) paint(code, s string) string {
	if !d.color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (d *demoOut) bold(s string) string  { return d.paint("1", s) }
func (d *demoOut) dim(s string) string   { return d.paint("2", s) }
func (d *demoOut) green(s string) string { return d.paint("1;32", s) }
func (d *demoOut) red(s string) string   { return d.paint("1;31", s) }
func (d *demoOut) cyan(s string) string  { return d.paint("36", s) }

func (d *demoOut) printf(format string, a ...any) { fmt.Fprintf(d.w, format, a...) }

// step prints label, runs f and says how long it took.
func (d *demoOut) step(t *testing.T, label string, f func() string) {
	t.Helper()
	d.printf("  %s %s … ", d.cyan("•"), label)
	start := time.Now()
	extra := f()
	if extra != "" {
		extra = " — " + extra
	}
	d.printf("%s%s %s\n", d.green("done"), extra, d.dim(fmt.Sprintf("(%.1fs)", time.Since(start).Seconds())))
}

// trace prints lines as an excerpt of a job log, wrapped to width.
func (d *demoOut) trace(lines []string) {
	const width = 100
	for _, l := range lines {
		for first := true; first || l != ""; first = false {
			cut := len(l)
			if cut > width {
				cut = width
				if i := strings.LastIndexByte(l[:width], ' '); i > width/2 {
					cut = i
				}
			}
			prefix := "    │ "
			if !first {
				prefix = "    │     "
			}
			d.printf("%s%s\n", d.dim(prefix), l[:cut])
			l = strings.TrimLeft(l[cut:], " ")
		}
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// TestDemo is `make demo`: writ on the real GitLab Runner in front of a
// hostile GitLab, told as a story on standard output. It admits a
// legitimate deploy, then refuses four attacks that a naive executor runs,
// and ends with a summary table. It runs only with WRIT_DEMO=1.
func TestDemo(t *testing.T) {
	if os.Getenv(DemoEnv) != "1" {
		t.Skipf("set %s=1 to run the demo (make demo)", DemoEnv)
	}
	d := &demoOut{w: os.Stdout, color: isTerminal(os.Stdout)}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	d.printf("\n%s\n\n", d.bold("writ — a GitLab Runner executor that runs only what a signed allowlist admits"))
	d.printf("Everything below is real and local: the GitLab Runner, gpg and ssh keys, signed git\n" +
		"history, a git server and a fake GitLab on 127.0.0.1. GitLab is the attacker: it may\n" +
		"send the runner any job it likes.\n\n")

	d.printf("%s\n", d.bold("Setting up"))
	var keys *Keys
	d.step(t, "making keys with gpg and ssh-keygen", func() string {
		keys = newKeys(t)
		return ""
	})
	d.printf("    %s\n", d.dim("alice: OpenPGP, signs acme/app's commits and the allowlist's; carol: SSH, approves\n"+
		"    allowlist versions; mallory: the attacker, with keys of her own"))
	d.step(t, "building writ (go build ./cmd/writ)", func() string {
		if _, err := WritBinary(); err != nil {
			t.Fatal(err)
		}
		if _, err := StepRunner(); err != nil {
			t.Fatal(err)
		}
		return ""
	})
	var writW, naiveW *World
	d.step(t, "starting two runner hosts, each with its own fake GitLab and git server", func() string {
		writW, naiveW = NewWorld(t), NewWorld(t)
		return "GitLab Runner " + runnerVersion(writW.RunnerBin)
	})
	var writF, naiveF *Fixture
	var env *writEnv
	d.step(t, "publishing acme/app (signed history) and allowlist version 7 (signed by alice, approved by carol)", func() string {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); writF = newFixture(t, writW, keys, "demo") }()
		go func() { defer wg.Done(); naiveF = newFixture(t, naiveW, keys, "demo") }()
		wg.Wait()
		return ""
	})
	d.step(t, `installing writ on the first host (environment "production", 2 root signers required)`, func() string {
		env = installWrit(t, writW, keys)
		if err := env.Accept(); err != nil {
			t.Fatal(err)
		}
		return "allowlist version 7 accepted"
	})
	d.printf("    %s\n", d.dim("The second host runs a naive custom executor that runs whatever GitLab sends."))

	type row struct{ job, naive, writ string }
	var rows []row

	// 1. The legitimate deploy.
	d.printf("\n%s\n", d.bold("1. A legitimate deploy"))
	d.printf("GitLab sends job %q of acme/app for branch main, exactly as the allowlist entry\n"+
		"app-deploy-production describes it.\n\n", LegitJob)
	o := writW.RunJob(ctx, writF.LegitPayload())
	if !o.Succeeded() {
		t.Fatalf("the legitimate deploy failed:\n%s", o)
	}
	d.trace(pickLines(plainTrace(o.Trace), "writ: admitted", "writ: source", "writ: checked out", "$ ./deploy.sh",
		"deploying acme/app", "deployed version", `$ echo "deploy of`, "deploy of ", "Job succeeded"))
	d.printf("  %s job %d admitted and succeeded %s\n", d.green("✓"), o.JobID, d.dim(fmt.Sprintf("(%.1fs end to end)", o.Runner.Duration.Seconds())))
	rows = append(rows, row{"legitimate deploy", "ran", d.green("admitted, succeeded")})

	// 2. The attacks.
	for i, a := range demoAttacks {
		s := scenarioNamed(t, a.scenario)
		d.printf("\n%s\n%s\n\n", d.bold(fmt.Sprintf("%d. Attack: %s", i+2, a.title)), a.story)
		var wo, no Outcome
		var wg sync.WaitGroup
		for _, x := range []struct {
			w *World
			f *Fixture
			o *Outcome
		}{{writW, writF, &wo}, {naiveW, naiveF, &no}} {
			_ = os.Remove(x.f.Canary.File)
			x.f.Payload = x.f.LegitPayload()
			if err := s.Mutate(x.f); err != nil {
				t.Fatalf("%s: %v", s.Name, err)
			}
			wg.Add(1)
			go func() { defer wg.Done(); *x.o = x.w.RunJob(ctx, x.f.Payload) }()
		}
		wg.Wait()
		naive := "attacker code did not run"
		if naiveF.Canary.Fired() {
			naive = d.red("attacker code RAN")
		}
		d.printf("  Without writ, the naive executor: %s.\n", naive)
		d.printf("  With writ:\n")
		d.trace(refusalLines(plainTrace(wo.Trace)))
		_, problems := judgeWrit(s.Writ, writF.Canary, env, wo)
		for _, p := range problems {
			t.Errorf("%s: %s", s.Name, p)
		}
		if len(problems) > 0 {
			t.Fatalf("%s", wo)
		}
		d.printf("  %s refused before anything ran: no checkout, no script. Audit log: refusal of job %d.\n", d.green("✓"), wo.JobID)
		if s.Writ.AllowlistReject != "" {
			d.printf("    writ kept version 7 in force; the audit log records the rejected head (allowlist-reject, rule %q).\n", s.Writ.AllowlistReject)
		}
		why := "failed check: " + strings.TrimPrefix(s.Writ.Reason, "Failed check: ")
		if s.Writ.AllowlistReject != "" {
			why = "allowlist v6 rejected by rule " + s.Writ.AllowlistReject + ", v7 kept; " + why
		}
		rows = append(rows, row{a.title, naive, d.green("refused") + " (" + why + ")"})
	}

	// 3. The summary.
	d.printf("\n%s\n\n", d.bold("Summary"))
	w0, w1 := len("job"), len("without writ")
	for _, r := range rows {
		w0 = max(w0, len(r.job))
		w1 = max(w1, visibleLen(r.naive))
	}
	d.printf("  %-*s  %s  %s\n", w0, "job", padVisible("without writ", w1), "with writ")
	d.printf("  %s  %s  %s\n", strings.Repeat("─", w0), strings.Repeat("─", w1), strings.Repeat("─", 40))
	for _, r := range rows {
		d.printf("  %-*s  %s  %s\n", w0, r.job, padVisible(r.naive, w1), r.writ)
	}
	out, err := env.command("audit", "verify").CombinedOutput()
	if err != nil {
		t.Fatalf("writ audit verify: %v\n%s", err, out)
	}
	verified := strings.TrimSpace(string(out))
	if i := strings.LastIndex(verified, ": "); i >= 0 {
		verified = verified[i+2:]
	}
	d.printf("\n  Audit log (writ audit verify): %s.\n", verified)
	d.printf("  %s\n\n", d.dim(fmt.Sprintf("Demo finished in %.0fs. The full suite (make test) runs %d such scenarios against writ and the naive executor.", time.Since(start).Seconds(), len(Scenarios))))
}

// runnerVersion is the version the runner binary reports.
func runnerVersion(bin string) string {
	out, _ := exec.Command(bin, "--version").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "(unknown version)"
}

func scenarioNamed(t *testing.T, name string) Scenario {
	for _, s := range Scenarios {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no scenario %q", name)
	return Scenario{}
}

// pickLines returns the lines of trace containing any of wants, each once.
func pickLines(trace string, wants ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range strings.Split(trace, "\n") {
		l = strings.TrimRight(l, " ")
		for _, w := range wants {
			if strings.Contains(l, w) && !seen[l] {
				seen[l] = true
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// refusalLines is the head of writ's refusal block: the verdict, the
// allowlist in force (and any note about a rejected head), and the first
// failed check with its explanation.
func refusalLines(trace string) []string {
	var out []string
	in, inCheck := false, false
	for _, l := range strings.Split(trace, "\n") {
		l = strings.TrimRight(l, " ")
		switch {
		case strings.HasPrefix(l, "writ refused this job"):
			in = true
		case !in:
			continue
		case strings.HasPrefix(l, "Failed check:"):
			inCheck = true
		case inCheck && l == "":
			return out
		case strings.HasPrefix(l, "Job:") || strings.HasPrefix(l, "Nothing of the job ran") || l == "":
			continue
		}
		out = append(out, l)
	}
	return out
}

func visibleLen(s string) int { return len([]rune(stripANSI(s))) }

func padVisible(s string, n int) string {
	return s + strings.Repeat(" ", max(0, n-visibleLen(s)))
}
