package executor

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"gitlab.com/writ-ci/writ/allowlist"
)

// maxListedFailures bounds the further failures a refusal lists.
const maxListedFailures = 40

// definitionChecks are checks an allowlist entry change could satisfy; a
// suggested entry is shown only when one of them failed.
var definitionChecks = []string{CheckEntry, CheckSteps, CheckScript, CheckAfterScript, CheckVariables,
	CheckImage, CheckServices, CheckArtifacts, CheckCache, CheckDependencies}

// writeRefusal prints the one block a GitLab user sees in the job log when
// the job is refused (or, in audit mode, would be).
func writeRefusal(w io.Writer, d *Decision, auditMode bool) {
	var b strings.Builder
	rule := strings.Repeat("=", 72)
	b.WriteString(rule + "\n")
	if auditMode {
		fmt.Fprintf(&b, "%sWRIT AUDIT MODE: enforce mode would REFUSE this job.%s\n", ansiBoldYellow, ansiReset)
		b.WriteString("It runs anyway, as GitLab Runner's own scripts, because this environment is in audit mode.\n")
	} else {
		fmt.Fprintf(&b, "%swrit refused this job:%s it does not match the allowlist of environment %q.\n", ansiBoldRed, ansiReset, d.Environment)
		b.WriteString("Nothing of the job ran: no source was checked out and no script was started.\n")
	}
	b.WriteString("\n")
	writeJobLines(&b, d)
	if len(d.Failures) > 0 {
		f := d.Failures[0]
		fmt.Fprintf(&b, "\nFailed check: %s\n  %s\n", f.Check, f.Message)
		if f.Expected != "" || f.Received != "" {
			if f.Line > 0 {
				fmt.Fprintf(&b, "  allowlist, line %d: %s\n  job,       line %d: %s\n", f.Line, f.Expected, f.Line, f.Received)
			} else {
				fmt.Fprintf(&b, "  allowlist: %s\n  job:       %s\n", f.Expected, f.Received)
			}
		}
		if f.Hint != "" {
			fmt.Fprintf(&b, "  What to do: %s\n", f.Hint)
		}
	}
	if rest := d.Failures[min(1, len(d.Failures)):]; len(rest) > 0 {
		fmt.Fprintf(&b, "\n%d more failed check(s):\n", len(rest))
		for i, f := range rest {
			if i == maxListedFailures {
				fmt.Fprintf(&b, "  … and %d more (run `writ check --job FILE` for all)\n", len(rest)-i)
				break
			}
			line := f.Message
			if f.Line > 0 && f.Expected != "" {
				line += fmt.Sprintf(" [allowlist: %s | job: %s]", f.Expected, f.Received)
			}
			fmt.Fprintf(&b, "  - %s: %s\n", f.Check, line)
		}
	}
	if text := suggestionText(d); text != nil {
		b.WriteString("\nThe allowlist entry that would admit this job's definition as GitLab sent it\n")
		b.WriteString("(to propose for review if the change is intended; values of protected, masked\n")
		b.WriteString("or file variables are not shown and appear as TODOs a maintainer must resolve):\n\n")
		for _, l := range strings.Split(strings.TrimRight(string(text), "\n"), "\n") {
			b.WriteString("    " + l + "\n")
		}
	}
	b.WriteString("\nIf the change is intended, propose it to the allowlist repository and get it approved;\n")
	b.WriteString("otherwise make the job match its allowlist entry. Ask the owners of this runner for access.\n")
	b.WriteString(rule + "\n")
	_, _ = io.WriteString(w, b.String())
}

func writeJobLines(b *strings.Builder, d *Decision) {
	j := d.Job
	if j.ID != "" && j.Project == "" && j.SHA == "" {
		// Only the id is known (a payload too large to read).
		fmt.Fprintf(b, "Job:        %s\n", j.ID)
	} else if j.ID != "" {
		fmt.Fprintf(b, "Job:        %s (project %q, job %q, %s %q, commit %s)\n", j.ID,
			allowlist.Visible(clip(j.Project)), allowlist.Visible(clip(j.Name)), orDash(j.RefType), allowlist.Visible(clip(j.Ref)), allowlist.Visible(clip(j.SHA)))
	}
	if d.Allowlist.Version != 0 {
		cached := ""
		if d.Allowlist.FromCache {
			cached = ", from writ's verified cache: the allowlist repository was unreachable"
		}
		fmt.Fprintf(b, "Allowlist:  version %d (commit %s%s)\n", d.Allowlist.Version, short(d.Allowlist.Commit), cached)
	}
	if d.EntryName != "" {
		fmt.Fprintf(b, "Entry:      %s\n", d.EntryName)
	}
	if d.Warning != "" {
		fmt.Fprintf(b, "Note:       %s\n", d.Warning)
	}
}

func orDash(s string) string {
	if s == "" {
		return "ref"
	}
	return s
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// writeAdmitted prints the banner of an admitted job, once, at prepare. It
// names the writ build that judged the job, so a job log says which
// version and commit of writ to look at.
func writeAdmitted(w io.Writer, s *Snapshot, version string) {
	fmt.Fprintf(w, "%swrit: admitted%s by entry %q of allowlist version %d (commit %s) in environment %q\n",
		ansiBoldGreen, ansiReset, s.Entry.Name, s.Allowlist.Version, short(s.Allowlist.Commit), s.Environment)
	if s.Entry.Source.ApprovalsOnly() {
		fmt.Fprintf(w, "writ: source %s at %s, verified (%s, no author signature: %s)\n", s.Repository, s.Commit, s.Entry.Source.Mode, s.Signer)
	} else {
		fmt.Fprintf(w, "writ: source %s at %s, verified (%s, signed by %s)\n", s.Repository, s.Commit, s.Entry.Source.Mode, s.Signer)
	}
	for _, v := range s.Sources {
		how := "signed by"
		if extraApprovalsOnly(s.Entry, v.Path) {
			how = "no author signature:"
		}
		fmt.Fprintf(w, "writ: source.extra %s: %s at %s on %s, verified (%s %s)\n", v.Path, v.Repository, v.Commit, v.Ref, how, v.Signer)
	}
	if s.Image != "" && s.Image != s.Entry.Definition.Image {
		fmt.Fprintf(w, "writ: image %s (the entry's %s, expanded from its pinned values)\n", s.Image, s.Entry.Definition.Image)
	}
	if version != "" {
		fmt.Fprintf(w, "writ: judged by writ %s\n", version)
	}
}

// extraApprovalsOnly reports whether e's extra source at path admits its
// commit on approvals alone (signature: none).
func extraApprovalsOnly(e *allowlist.Entry, path string) bool {
	for _, x := range e.Source.Extra {
		if x != nil && x.Path == path {
			return x.Policy.ApprovalsOnly()
		}
	}
	return false
}

// suggestionText is the rendered suggested entry, or nil when no entry
// change would help: no definition check failed, or the suggestion equals
// the matched entry (the job differs in ways no entry can admit, such as an
// image entrypoint).
func suggestionText(d *Decision) []byte {
	if d.Suggestion == nil || !slices.ContainsFunc(d.Failures, func(f Failure) bool { return slices.Contains(definitionChecks, f.Check) }) {
		return nil
	}
	text, err := allowlist.MarshalEntry(d.Suggestion)
	if err != nil {
		return nil
	}
	if d.Entry != nil {
		if cur, err := allowlist.MarshalEntry(d.Entry); err == nil && string(cur) == string(text) {
			return nil
		}
	}
	return text
}

// suggestion builds the entry to propose: the payload's definition on top
// of the matching or nearest existing entry, so its name, source and
// signers stay as reviewed.
func suggestion(p *Payload, env string, found *allowlist.Entry, near []*allowlist.Entry) *allowlist.Entry {
	fresh := EntryFromPayload(p, env)
	base := found
	if base == nil && len(near) > 0 {
		base = near[0]
	}
	if base == nil {
		return fresh
	}
	s := *base
	s.Match.Environments = appendMissing(slices.Clone(base.Match.Environments), env)
	s.Match.Refs = appendMissing(slices.Clone(base.Match.Refs), payloadRef(p))
	timeout := base.Definition.Timeout
	old := base.Definition.Variables
	s.Definition = fresh.Definition
	s.Definition.Timeout = timeout
	for i, v := range s.Definition.Variables {
		for _, ov := range old {
			if ov.Name == v.Name && admitsValue(ov, payloadValue(p, v.Name)) {
				// The reviewed rule still admits the job's value: keep it.
				s.Definition.Variables[i] = ov
			}
		}
	}
	// The entry's variable sets stay included.
	IncludeVariableSets(&s, p, base.Definition.VariableSets, base.Definition.Included)
	s.Source.Signers = slices.Clone(base.Source.Signers)
	return &s
}

func appendMissing(list []string, s string) []string {
	if !slices.Contains(list, s) {
		list = append(list, s)
	}
	return list
}

func payloadValue(p *Payload, key string) string {
	for _, v := range p.Variables {
		if v.Key == key {
			return v.Value
		}
	}
	return ""
}

// admitsValue reports whether rule v lets value through.
func admitsValue(v allowlist.Variable, value string) bool {
	if v.HasValue {
		return v.Value == value
	}
	re, err := regexp.Compile(`^(?:` + v.Pattern + `)$`)
	return err == nil && re.MatchString(value)
}

// SuggestedEntry is the allowlist entry (YAML) that would admit the job's
// definition as GitLab sent it, as the refusal block shows it; nil when no
// entry change would help.
func SuggestedEntry(d *Decision) []byte { return suggestionText(d) }
