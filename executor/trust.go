package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/gitrepo"
	"gitlab.com/writ-ci/writ/internal/state"
)

// CheckJobID is the check that refuses a payload whose job id another run
// of the runner already holds (on this host or, with a fleet store, on any).
const CheckJobID = "job_id"

// conflictRetries bounds how often a decision is taken again when another
// host moved the entry's mark while it was taken.
const conflictRetries = 3

// checkSource verifies the job's source against the entry's marks and, for
// a real admission (record), moves the entry's mark to the job's commit.
// The mark moves by compare-and-swap: if another writer (another host)
// moved it meanwhile, the decision is taken again against its mark. An
// error means writ cannot decide.
func (o *Options) checkSource(ctx context.Context, d *Decision, p *Payload, entry *allowlist.Entry, a *allowlist.Allowlist, record bool) error {
	if record {
		unlock, err := o.lockEntry(ctx, entry.Name)
		if err != nil {
			return err
		}
		defer unlock()
	}
	before := len(d.Failures)
	for attempt := 1; ; attempt++ {
		// The marks are read while the source is fetched; verifySource
		// waits for them before it judges the commit.
		mark := o.startReadHighWater(ctx, entry.Name)
		start := time.Now()
		res, err := o.verifySource(ctx, d, p, entry, a, mark.wait)
		last, ent, merr := mark.wait()
		if merr != nil {
			return merr
		}
		if err == nil && last != nil && last.floor != nil {
			err = o.checkFloor(ctx, d, p, entry, last.floor)
		}
		if err == nil {
			d.Sources, err = o.verifyExtraSources(ctx, d, p, entry, a)
		}
		if fs, refused := refusals(err); refused {
			d.Failures = append(d.Failures, fs...)
			res = nil
		} else if err != nil {
			if len(d.Failures) == 0 {
				return err
			}
			// The definition already refuses the job: that refusal stands
			// whether or not the source could be checked.
			d.fail(Failure{Check: CheckSource, Message: "the source was not verified: " + err.Error()})
			return nil
		} else {
			d.Signer = res.signer
			if entry.Source.ApprovalsOnly() {
				o.phase("verify", start, "verified commit %s, no author signature: %s", short(p.SHA), res.signer)
			} else {
				o.phase("verify", start, "verified commit %s, signed by %s", short(p.SHA), res.signer)
			}
		}
		d.Admitted = res != nil && len(d.Failures) == 0
		if !d.Admitted || !record {
			return nil
		}
		// No mark moves for a job id this run does not hold.
		if err := o.claim.wait(); err != nil {
			d.Admitted = false
			return err
		}
		if err := o.recordExtraSources(ctx, d, p, entry); err != nil {
			d.Admitted = false
			return err
		}
		if ent.Holds(entry.Source.Repository, p.SHA) {
			return nil
		}
		hw := &highWater{Entry: entry.Name, Repository: entry.Source.Repository, Mode: entry.Source.Mode,
			Commit: p.SHA, Job: p.ID, Time: o.Now().UTC()}
		err = o.writeHighWater(ctx, ent, hw)
		if err == nil {
			return nil
		}
		d.Admitted = false
		if !errors.Is(err, state.ErrConflict) || attempt == conflictRetries {
			return fmt.Errorf("record the admitted commit: %w", err)
		}
		// Another host admitted a job of this entry meanwhile. If it
		// admitted this very commit, the mark already says what this
		// admission would write; otherwise decide again against its mark.
		if now, _, rerr := o.readHighWater(ctx, entry.Name); rerr == nil && now != nil && now.floor == nil &&
			now.Commit == p.SHA && now.Repository == entry.Source.Repository {
			d.Admitted = true
			return nil
		}
		d.Failures, d.Signer = d.Failures[:before], ""
	}
}

// checkFloor refuses a rollback below this host's own mark for the entry,
// when the fleet's mark differs from it (the store lost or withholds it).
// verifySource has fetched the job's commit into the mirror.
func (o *Options) checkFloor(ctx context.Context, d *Decision, p *Payload, e *allowlist.Entry, floor *highWater) error {
	if floor.Repository != e.Source.Repository || e.Source.AllowRollback {
		return nil
	}
	unlock, err := o.lockMirror(ctx, e.Source.Repository)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := gitrepo.OpenMirror(o.Config.Paths.Cache, e.Source.Repository, sourceAuth(o.Config, e.Source.Repository), mirrorLimits(o.Config))
	if err != nil {
		return err
	}
	if ok, err := m.IsAncestor(floor.Commit, p.SHA); err != nil || !ok {
		d.fail(Failure{Check: CheckRollback,
			Message:  fmt.Sprintf("commit %s is not %s or a descendant of it, the last commit this runner host admitted for entry %q (job %s): this looks like a rollback (the fleet's state store holds an older mark)", p.SHA, floor.Commit, e.Name, floor.Job),
			Expected: "a descendant of " + floor.Commit, Received: p.SHA,
			Hint: "run a newer commit, or get allow_rollback set on the entry"})
	}
	return nil
}

// claimToken identifies this run of the runner: the runner writes each
// run's payload to a file of its own, and a retried stage of the same run
// reads the same file.
func (o *Options) claimToken() string {
	path := o.Getenv(envJobResponse)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	sum := sha256.Sum256([]byte(state.HostName(o.Config) + "\x00" + path))
	return hex.EncodeToString(sum[:])
}

// pendingClaim is a job-id claim under way (see startClaim).
type pendingClaim struct {
	done chan struct{}
	// held is set when another run holds the id; err when the claim
	// could not be taken (writ cannot decide).
	held *state.ClaimedError
	err  error
}

// startClaim claims the job id for this run in the background: with a
// fleet store the claim is a round trip to the store, which overlaps the
// allowlist and source checks. Only o.State is used meanwhile.
func (o *Options) startClaim(ctx context.Context, p *Payload) *pendingClaim {
	c := state.JobClaim{ID: p.ID, Token: o.claimToken(), Host: state.HostName(o.Config), PayloadSHA256: p.Digest, Time: o.Now().UTC()}
	pc := &pendingClaim{done: make(chan struct{})}
	go func() {
		defer close(pc.done)
		err := o.State.ClaimJob(ctx, c)
		if !errors.As(err, &pc.held) && err != nil {
			pc.err = fmt.Errorf("claim job id %s: %w", c.ID, err)
		}
	}()
	return pc
}

// wait returns nil once this run holds the id, the *state.ClaimedError
// when another run does, or why the id could not be claimed.
func (pc *pendingClaim) wait() error {
	<-pc.done
	if pc.held != nil {
		return pc.held
	}
	return pc.err
}

// joinClaim waits for the claim and gives the decision judged (with its
// error) only if this run holds the id. A payload whose id another run
// holds is refused for that alone: what else was found concerns a job
// that is not this run's, and the refusal touches no state of the run
// that holds it. A claim that could not be taken means writ cannot decide.
func (o *Options) joinClaim(d *Decision, judged error) error {
	err := o.claim.wait()
	var held *state.ClaimedError
	if errors.As(err, &held) {
		*d = Decision{Mode: d.Mode, Environment: d.Environment, Job: d.Job, PayloadDigest: d.PayloadDigest}
		d.fail(Failure{Check: CheckJobID, Message: "a second payload for a job id in use: " + held.Error(),
			Hint: "GitLab never sends two jobs with one id; this payload is a duplicate or a replay. Find the first run in the audit log"})
		return nil
	}
	if err != nil {
		return err
	}
	o.claimed = d.Job.ID
	return judged
}

// dropClaim gives up this run's claim after a prepare that decided nothing,
// so that the runner's retry (with a payload file of its own) can claim
// the id again.
func (o *Options) dropClaim(ctx context.Context) {
	if o.claimed == "" {
		return
	}
	c := state.JobClaim{ID: o.claimed, Token: o.claimToken()}
	if err := o.State.DropClaim(ctx, c); err != nil {
		o.Log.Warn("cannot drop the job id claim", "job", c.ID, "error", err)
	}
	o.claimed = ""
}

// duplicate reports whether d refuses a payload whose job id another run
// holds: such a refusal writes no job state.
func (d *Decision) duplicate() bool {
	for _, f := range d.Failures {
		if f.Check == CheckJobID {
			return true
		}
	}
	return false
}

// ownsJob reports whether this run may remove job id's state: it holds the
// id's claim, or nobody does.
func (o *Options) ownsJob(ctx context.Context, id string) (bool, error) {
	c, err := o.State.Claim(ctx, id)
	if err != nil || c == nil {
		return err == nil, err
	}
	return c.Token == o.claimToken(), nil
}

// releaseJob releases this run's claim on id on this host.
func (o *Options) releaseJob(ctx context.Context, id string) error {
	return o.State.ReleaseJob(ctx, state.JobClaim{ID: id, Token: o.claimToken()})
}
