package allowlist

import (
	"fmt"
	"strings"
	"time"
)

// Markdown renders the report for a merge request comment. Every value
// taken from an allowlist is rendered with Visible and placed in a code
// span or fenced block whose backtick fence is longer than any run of
// backticks inside it, so no value can inject Markdown, HTML, mentions or
// links, or hide a character.
func (d *DiffReport) Markdown() string {
	var b strings.Builder
	o, n := d.Old, d.New
	switch {
	case o == nil && n == nil:
		b.WriteString("## Allowlist: nothing before or after\n")
		return b.String()
	case o == nil:
		fmt.Fprintf(&b, "## New allowlist %s, version %d\n\n", code(n.Repository), n.Version)
		fmt.Fprintf(&b, "- Expires: %s\n", code(fmtTime(n.Expires)))
	case n == nil:
		fmt.Fprintf(&b, "## Allowlist %s removed (was version %d)\n\n", code(o.Repository), o.Version)
	default:
		fmt.Fprintf(&b, "## Allowlist %s: version %d → %d\n\n", code(n.Repository), o.Version, n.Version)
		if o.Repository != n.Repository {
			fmt.Fprintf(&b, "- **Repository identity changes**: %s → %s. Environments configured for %s refuse this version.\n",
				code(o.Repository), code(n.Repository), code(o.Repository))
		}
		if n.Version <= o.Version {
			fmt.Fprintf(&b, "- **Version does not increase** (%d → %d): environments that accepted version %d refuse this one.\n", o.Version, n.Version, o.Version)
		}
		if !o.Expires.Equal(n.Expires) {
			fmt.Fprintf(&b, "- Expires: %s → %s\n", code(fmtTime(o.Expires)), code(fmtTime(n.Expires)))
		} else {
			fmt.Fprintf(&b, "- Expires: %s (unchanged)\n", code(fmtTime(n.Expires)))
		}
	}
	if d.Empty() {
		b.WriteString("\nNo changes to jobs or signer sets.\n")
		return b.String()
	}
	if len(d.Environments) == 0 {
		b.WriteString("\nNo job changes in any environment.\n")
	}
	for _, env := range d.Environments {
		fmt.Fprintf(&b, "\n### Environment %s\n", code(env.Environment))
		if len(env.Added) > 0 {
			fmt.Fprintf(&b, "\n#### Newly allowed (%d)\n", len(env.Added))
			for _, e := range env.Added {
				writeEntry(&b, e)
			}
		}
		if len(env.Changed) > 0 {
			fmt.Fprintf(&b, "\n#### Changed (%d)\n", len(env.Changed))
			for _, c := range env.Changed {
				writeChange(&b, c)
			}
		}
		if len(env.Removed) > 0 {
			fmt.Fprintf(&b, "\n#### No longer allowed (%d)\n\n", len(env.Removed))
			for _, e := range env.Removed {
				fmt.Fprintf(&b, "- %s: job %s of %s on %s\n", code(e.Name), code(e.Match.Job), code(e.Match.Project), codeList(e.Match.Refs))
			}
		}
	}
	if len(d.People) > 0 {
		b.WriteString("\n### People (who counts once among source approvers)\n\n")
		for _, p := range d.People {
			fmt.Fprintf(&b, "- %s: %s → %s\n", p.Field, code(p.Old), code(p.New))
		}
	}
	if len(d.Signers) > 0 {
		b.WriteString("\n### Signer sets\n\n")
		for _, s := range d.Signers {
			what := "changed"
			switch {
			case s.Added:
				what = "added"
			case s.Removed:
				what = "removed"
			}
			used := "used by no entry"
			if len(s.UsedBy) > 0 {
				used = "used by " + codeList(s.UsedBy)
			}
			fmt.Fprintf(&b, "- %s %s, %s\n", code(s.Name), what, used)
			for _, k := range s.AddedKeys {
				fmt.Fprintf(&b, "  - added: %s\n", code(k))
			}
			for _, k := range s.RemovedKeys {
				fmt.Fprintf(&b, "  - removed: %s\n", code(k))
			}
			for _, k := range s.ChangedKeys {
				fmt.Fprintf(&b, "  - key file changed (user IDs, subkeys or revocations): %s\n", code(k))
			}
		}
	}
	return b.String()
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// writeEntry describes an entry in full, for a job that becomes allowed.
func writeEntry(b *strings.Builder, e *Entry) {
	d, s := e.Definition, e.Source
	fmt.Fprintf(b, "\n**%s**: job %s of %s\n\n", code(e.Name), code(e.Match.Job), code(e.Match.Project))
	fmt.Fprintf(b, "- refs: %s; environments: %s\n", codeList(e.Match.Refs), codeList(e.Match.Environments))
	if img, err := ExpandImage(&d, d.Image); d.Image != "" && err == nil && img != d.Image {
		fmt.Fprintf(b, "- image: %s, expanded %s\n", code(d.Image), code(img))
	} else if d.Image != "" {
		fmt.Fprintf(b, "- image: %s\n", code(d.Image))
	} else {
		b.WriteString("- image: none (the executor's default environment)\n")
	}
	if len(d.Services) > 0 {
		fmt.Fprintf(b, "- services: %s\n", codeList(d.Services))
	}
	if len(d.VariableSets) > 0 {
		fmt.Fprintf(b, "- variable sets: %s\n", codeList(d.VariableSets))
	}
	if all := d.AllVariables(); len(all) > 0 {
		var vs []string
		for i := range all {
			v := &all[i]
			vs = append(vs, code(v.Name)+" "+code(describeVariable(v)))
		}
		fmt.Fprintf(b, "- variables: %s\n", strings.Join(vs, "; "))
	} else {
		b.WriteString("- variables: none\n")
	}
	fmt.Fprintf(b, "- timeout: %s; artifacts: %t; cache: %t; dependencies: %t\n", describeTimeout(d.Timeout), d.Artifacts, d.Cache, d.Dependencies)
	if d.Network != "" {
		fmt.Fprintf(b, "- network: %s\n", code(d.Network))
	}
	if d.Uploads != nil {
		fmt.Fprintf(b, "- uploads: %s\n", code(DescribeUploads(d.Uploads)))
	}
	src := fmt.Sprintf("- source: %s, mode %s, signed by %s", code(s.Repository), code(string(s.Mode)), codeList(s.Signers))
	if s.ApprovalsOnly() {
		src = fmt.Sprintf("- source: %s, mode %s, **no author signature**", code(s.Repository), code(string(s.Mode)))
	}
	if ap := s.Approvals; ap != nil {
		src += ", approved by " + describeApprovals(ap)
	}
	if s.Pin != "" {
		src += ", pinned to " + code(s.Pin)
	}
	if s.DescendsFrom != "" {
		src += ", descending from " + code(s.DescendsFrom)
	}
	if s.AllowRollback {
		src += ", **rollback allowed**"
	}
	b.WriteString(src + "\n")
	for _, x := range s.Extra {
		fmt.Fprintf(b, "- extra source %s\n", code(DescribeExtraSource(x)))
	}
	writeScript(b, "script", d.Script)
	if len(d.AfterScript) > 0 {
		writeScript(b, "after_script", d.AfterScript)
	}
}

func writeScript(b *strings.Builder, name string, items []string) {
	lines := make([]string, len(items))
	for i, s := range items {
		lines[i] = Visible(s)
	}
	fmt.Fprintf(b, "\n%s (one item a line):\n\n%s", name, fenced("sh", strings.Join(lines, "\n")+"\n"))
}

func writeChange(b *strings.Builder, c EntryDiff) {
	fmt.Fprintf(b, "\n**%s**: job %s of %s\n\n", code(c.New.Name), code(c.New.Match.Job), code(c.New.Match.Project))
	var diffs []FieldChange
	for _, f := range c.Changes {
		switch {
		case f.Diff != "":
			fmt.Fprintf(b, "- %s changes (diff below)\n", code(f.Field))
			diffs = append(diffs, f)
		case f.Old == "" && strings.HasPrefix(f.Field, "signer set "):
			fmt.Fprintf(b, "- %s: %s\n", code(f.Field), code(f.New))
		default:
			fmt.Fprintf(b, "- %s: %s → %s\n", code(f.Field), codeOrEmpty(f.Old), codeOrEmpty(f.New))
		}
	}
	for _, f := range diffs {
		fmt.Fprintf(b, "\n%s:\n\n%s", code(f.Field), fenced("diff", f.Diff))
	}
}

func codeList(l []string) string {
	if len(l) == 0 {
		return "*none*"
	}
	c := make([]string, len(l))
	for i, s := range l {
		c[i] = code(s)
	}
	return strings.Join(c, ", ")
}

func codeOrEmpty(s string) string {
	if s == "" {
		return "*empty*"
	}
	return code(s)
}

// code renders s as an inline code span.
func code(s string) string {
	v := Visible(s)
	if v == "" {
		return "*empty*"
	}
	fence := strings.Repeat("`", longestRun(v, '`')+1)
	if strings.HasPrefix(v, "`") || strings.HasSuffix(v, "`") {
		return fence + " " + v + " " + fence
	}
	return fence + v + fence
}

// fenced renders text, whose lines are already Visible, as a fenced code
// block that no line inside can close.
func fenced(lang, text string) string {
	fence := strings.Repeat("`", max(3, longestRun(text, '`')+1))
	return fence + lang + "\n" + text + fence + "\n"
}

func longestRun(s string, c byte) int {
	best, cur := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			cur++
			best = max(best, cur)
		} else {
			cur = 0
		}
	}
	return best
}
