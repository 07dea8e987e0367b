package executor

import (
	"fmt"
	"slices"
	"strings"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// Check names, as they appear in Failure.Check, refusal text and the audit log.
const (
	CheckPayload      = "payload"
	CheckEntry        = "entry"
	CheckRef          = "ref"
	CheckSteps        = "steps"
	CheckScript       = "script"
	CheckAfterScript  = "after_script"
	CheckRun          = "run"
	CheckHooks        = "hooks"
	CheckVariables    = "variables"
	CheckImage        = "image"
	CheckServices     = "services"
	CheckArtifacts    = "artifacts"
	CheckCache        = "cache"
	CheckDependencies = "dependencies"
	CheckSecrets      = "secrets"
	CheckSource       = "source"
	CheckPin          = "pin"
	CheckDescends     = "descends_from"
	CheckRollback     = "rollback"
	CheckSignature    = "signature"
)

// Failure is one failed admission check.
type Failure struct {
	// Check names the check (the Check… constants).
	Check string `json:"check"`
	// Message says what differs, in terms of .gitlab-ci.yml and the allowlist.
	Message string `json:"message"`
	// Line is the 1-based line of a script or after_script that differs.
	Line int `json:"line,omitempty"`
	// Column is the 1-based byte column of the first difference in Line.
	Column int `json:"column,omitempty"`
	// Expected is what the allowlist says, Received what GitLab sent, both
	// rendered with allowlist.Visible so invisible characters show.
	Expected string `json:"expected,omitempty"`
	Received string `json:"received,omitempty"`
	// Hint says what to do.
	Hint string `json:"hint,omitempty"`
}

// Error makes a refusal an error, so a step of admission can return it: the
// caller tells it from "cannot decide" with errors.As.
func (f *Failure) Error() string { return f.Check + ": " + f.Message }

// JobRef identifies the job a decision is about, as GitLab described it.
type JobRef struct {
	ID      string `json:"id,omitempty"`
	Project string `json:"project,omitempty"`
	Name    string `json:"name,omitempty"`
	Ref     string `json:"ref,omitempty"`
	RefType string `json:"ref_type,omitempty"`
	SHA     string `json:"sha,omitempty"`
}

// AllowlistRef identifies the accepted allowlist version a decision used.
type AllowlistRef struct {
	Version   int64  `json:"version,omitempty"`
	Commit    string `json:"commit,omitempty"`
	Digest    string `json:"digest,omitempty"`
	FromCache bool   `json:"from_cache,omitempty"`
}

// AdmittedVariable is a job variable the entry lets through.
type AdmittedVariable struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// File: the runner marks it a file variable; the job sees a path to a
	// 0600 file holding Value.
	File bool `json:"file,omitempty"`
	// raw: the entry's raw flag; expandVariables leaves the value as it is.
	raw bool
}

// Decision is the outcome of admission for one job.
type Decision struct {
	// Admitted is true when every check passed: what enforce mode admits.
	Admitted bool `json:"admitted"`
	// Mode is the configured mode; in audit mode a job that is not Admitted
	// still runs (as a pass-through of the runner's own scripts).
	Mode        config.Mode  `json:"mode"`
	Environment string       `json:"environment"`
	Job         JobRef       `json:"job"`
	Allowlist   AllowlistRef `json:"allowlist"`
	// Entry is the matching allowlist entry, nil when none matches.
	Entry *allowlist.Entry `json:"-"`
	// EntryName is Entry.Name ("" when none matches).
	EntryName string `json:"entry,omitempty"`
	// Ref is the full ref (refs/heads/… or refs/tags/…) the job matched in
	// Entry: the ref writ fetches and verifies the commit on, and the
	// only source of the job's CI_COMMIT_BRANCH, CI_COMMIT_TAG and
	// CI_COMMIT_REF_NAME.
	Ref string `json:"verified_ref,omitempty"`
	// Failures lists every failed check; the first is the one shown first.
	Failures []Failure `json:"failures,omitempty"`
	// Variables are the admitted variables (values withheld from JSON).
	Variables []AdmittedVariable `json:"-"`
	// Image is the entry's image as GitLab Runner would expand it, from the
	// entry's pinned values (allowlist.ExpandImage): what runs.
	Image string `json:"image,omitempty"`
	// Signer is the verified signer of the commit or tag, when verified.
	Signer string `json:"signer,omitempty"`
	// Sources are the entry's verified further repositories (source.extra).
	Sources []VerifiedSource `json:"sources,omitempty"`
	// PayloadDigest is the hex SHA-256 of the payload bytes.
	PayloadDigest string `json:"payload_sha256,omitempty"`
	// Suggestion is an entry that would admit the job's definition as
	// GitLab sent it (nil when the payload could not be read).
	Suggestion *allowlist.Entry `json:"-"`
	// Warning repeats the accepted allowlist's warning, if any.
	Warning string `json:"warning,omitempty"`
}

// FailedChecks lists the distinct check names that failed, in order.
func (d *Decision) FailedChecks() []string {
	var out []string
	for _, f := range d.Failures {
		if !slices.Contains(out, f.Check) {
			out = append(out, f.Check)
		}
	}
	return out
}

func (d *Decision) fail(f Failure) { d.Failures = append(d.Failures, f) }

// IsPredefined reports whether a variable key is GitLab predefined metadata
// that writ tolerates in a payload without passing it to the job: a name
// GitLab or GitLab Runner defines (allowlist.Predefined). A user variable
// that merely starts with CI_ or GITLAB_ is not predefined: like any other
// it reaches the job only when the entry names it.
func IsPredefined(key string) bool { return allowlist.Predefined(key) }

// checkDefinition compares the payload with the entry's definition and
// returns the variables that reach the job. hostEnv is the environment's
// job.env: names writ sets that no variable may override.
func checkDefinition(d *Decision, p *Payload, e *allowlist.Entry, hostEnv map[string]string) []AdmittedVariable {
	def := &e.Definition
	var script, after []string
	var seenScript, seenAfter bool
	for _, s := range p.Steps {
		switch s.Name {
		case "script":
			if seenScript {
				d.fail(Failure{Check: CheckSteps, Message: "the job has two script steps", Hint: "GitLab sends one; this payload was not made by GitLab"})
			}
			seenScript, script = true, s.Script
		case "after_script":
			if seenAfter {
				d.fail(Failure{Check: CheckSteps, Message: "the job has two after_script steps", Hint: "GitLab sends one; this payload was not made by GitLab"})
			}
			seenAfter, after = true, s.Script
		default:
			d.fail(Failure{
				Check:    CheckSteps,
				Message:  fmt.Sprintf("the job has a step %q; writ runs only script and after_script", allowlist.Visible(clip(s.Name))),
				Received: allowlist.Visible(clip(s.Name)),
				Hint:     "remove the keyword that creates this step (for example release:) from the job in .gitlab-ci.yml",
			})
		}
	}
	compareLines(d, CheckScript, "script", def.Script, script)
	compareLines(d, CheckAfterScript, "after_script", def.AfterScript, after)

	if p.Run > 0 {
		d.fail(Failure{Check: CheckRun, Message: "the job uses run: (GitLab steps), which writ never executes",
			Hint: "use script: with the lines of the allowlist entry instead of run:"})
	}
	if p.Hooks > 0 {
		d.fail(Failure{Check: CheckHooks, Message: "the job has hooks (hooks:pre_get_sources_script or similar), which writ never executes",
			Hint: "remove hooks: from the job; writ fetches and checks out the source itself"})
	}
	if p.Secrets > 0 {
		d.fail(Failure{Check: CheckSecrets, Message: fmt.Sprintf("the job requests %d CI secret(s) (secrets:); writ does not deliver secrets from external secret managers", p.Secrets),
			Hint: "remove secrets: from the job; provide what the job needs through writ's environment configuration (job.env) on the runner host"})
	}
	// GitLab Runner writes the payload with the image and services already
	// expanded (from GitLab's variables); what must equal them is the
	// entry's references expanded from its pinned values, which is what
	// runs.
	d.Image = expandedImage(d, "image", CheckImage, def, def.Image)
	checkImage(d, "image", CheckImage, d.Image, p.Image)
	if len(p.Services) != len(def.Services) {
		d.fail(Failure{Check: CheckServices,
			Message:  fmt.Sprintf("the job has %d service(s), the entry allows %d", len(p.Services), len(def.Services)),
			Expected: allowlist.Visible(strings.Join(def.Services, ", ")),
			Received: allowlist.Visible(strings.Join(imageNames(p.Services), ", ")),
			Hint:     "make services: list exactly the entry's digest-pinned images"})
	} else {
		for i := range p.Services {
			what := fmt.Sprintf("services[%d]", i)
			checkImage(d, what, CheckServices, expandedImage(d, what, CheckServices, def, def.Services[i]), p.Services[i])
		}
	}
	type allowance struct {
		check   string
		n       int
		allowed bool
		hint    string
	}
	for _, a := range []allowance{
		{CheckArtifacts, p.Artifacts, def.Artifacts || def.Uploads != nil, "remove artifacts: from the job, or get the allowlist entry to list them under uploads: (writ then uploads exactly the entry's files); artifacts: true in the entry lets them through without uploading anything"},
		{CheckCache, p.Cache, def.Cache, "remove cache: from the job, or set cache: true in the allowlist entry (writ still never restores or saves a cache)"},
		{CheckDependencies, p.Dependencies, def.Dependencies, "add `dependencies: []` to the job (GitLab otherwise lists every earlier job with artifacts), or set dependencies: true in the allowlist entry (writ still never downloads them)"},
	} {
		if a.n > 0 && !a.allowed {
			d.fail(Failure{Check: a.check, Message: fmt.Sprintf("the job has %d %s item(s); the entry allows none", a.n, a.check), Hint: a.hint})
		}
	}
	if def.Uploads != nil {
		checkUploads(d, p, def.Uploads)
	}
	return checkVariables(d, p, def.AllVariables(), hostEnv)
}

// compareLines requires got to equal want line for line, byte for byte, and
// reports the first difference.
func compareLines(d *Decision, check, what string, want, got []string) {
	if slices.Equal(want, got) {
		return
	}
	n := min(len(want), len(got))
	i := 0
	for i < n && want[i] == got[i] {
		i++
	}
	f := Failure{Check: check, Line: i + 1}
	switch {
	case i < n:
		f.Column = firstDiff(want[i], got[i]) + 1
		f.Message = fmt.Sprintf("%s line %d differs from the allowlist entry (first difference at byte %d)", what, i+1, f.Column)
		f.Expected, f.Received = allowlist.Visible(want[i]), allowlist.Visible(got[i])
		if f.Expected == f.Received {
			// Visible renders some distinct strings alike (a literal
			// "<U+200B>" and the character itself); bytes decide.
			f.Expected += fmt.Sprintf("   (bytes %q)", want[i])
			f.Received += fmt.Sprintf("   (bytes %q)", got[i])
		}
	case i < len(want):
		f.Message = fmt.Sprintf("%s line %d of the allowlist entry is missing from the job (the entry has %d lines, the job %d)", what, i+1, len(want), len(got))
		f.Expected, f.Received = allowlist.Visible(want[i]), "(no line)"
	default:
		f.Message = fmt.Sprintf("%s line %d is not in the allowlist entry (the entry has %d lines, the job %d)", what, i+1, len(want), len(got))
		f.Expected, f.Received = "(no line)", allowlist.Visible(got[i])
	}
	f.Hint = fmt.Sprintf("make the job's %s in .gitlab-ci.yml exactly the entry's lines, or get the allowlist entry changed and approved", what)
	d.fail(f)
}

func firstDiff(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func imageNames(imgs []Image) []string {
	out := make([]string, len(imgs))
	for i, img := range imgs {
		out[i] = img.Name
	}
	return out
}

// expandedImage is the entry's image or service reference ref as GitLab
// Runner expands it, from the entry's pinned values
// (allowlist.ExpandImage). Parse refuses an entry whose reference cannot be
// expanded so; one built otherwise fails the check.
func expandedImage(d *Decision, what, check string, def *allowlist.Definition, ref string) string {
	img, err := allowlist.ExpandImage(def, ref)
	if err != nil {
		d.fail(Failure{Check: check, Message: fmt.Sprintf("the entry's %s %s", what, err.Error()),
			Hint: "get the entry fixed: writ allowlist lint says what to change"})
		return ref
	}
	return img
}

func checkImage(d *Decision, what, check, want string, got Image) {
	if got.Name != want {
		exp := want
		if exp == "" {
			exp = "(no image)"
		}
		rec := got.Name
		if rec == "" {
			rec = "(no image)"
		}
		d.fail(Failure{Check: check, Message: fmt.Sprintf("%s differs from the allowlist entry", what),
			Expected: allowlist.Visible(exp), Received: allowlist.Visible(clip(rec)),
			Hint: "use exactly the entry's digest-pinned image reference (name@sha256:…), or none if the entry names none"})
	}
	if len(got.Other) > 0 {
		d.fail(Failure{Check: check, Message: fmt.Sprintf("%s sets %s; an allowlist entry pins an image by name only", what, strings.Join(got.Other, ", ")),
			Hint: "remove these image options from the job"})
	}
}

// checkVariables denies every variable the entry does not name, except
// predefined metadata, which is dropped. Named variables must have the
// entry's kind (value or file) and match its pinned value or pattern in
// full; names writ sets, and dangerous names the entry does not mark, are
// refused whatever the entry says, so that an allowlist built other than
// by Parse cannot let them through either.
func checkVariables(d *Decision, p *Payload, allowed []allowlist.Variable, hostEnv map[string]string) []AdmittedVariable {
	byName := make(map[string]*allowlist.Variable, len(allowed))
	for i := range allowed {
		byName[allowed[i].Name] = &allowed[i]
	}
	seen := make(map[string]bool, len(p.Variables))
	var out []AdmittedVariable
	for _, v := range p.Variables {
		key := allowlist.Visible(clip(v.Key))
		if seen[v.Key] {
			d.fail(Failure{Check: CheckVariables, Message: fmt.Sprintf("variable %s is defined twice in the payload; writ cannot tell which value the job was meant to get", key),
				Hint: "define the variable once (check project, group and instance CI/CD settings and .gitlab-ci.yml)"})
			continue
		}
		seen[v.Key] = true
		a := byName[v.Key]
		if a == nil {
			if IsPredefined(v.Key) {
				continue
			}
			f := Failure{Check: CheckVariables, Message: fmt.Sprintf("variable %s is not allowed by the allowlist entry", key),
				Expected: "(not named by the entry)", Received: key,
				Hint: "remove the variable from .gitlab-ci.yml and from the project's, group's and instance's CI/CD variables, or get the entry to name it with a pinned value or pattern"}
			if strings.HasPrefix(v.Key, "CI_") || strings.HasPrefix(v.Key, "GITLAB_") {
				// Dropping it would leave a script that filters on it
				// acting on everything.
				f.Message = fmt.Sprintf("variable %s is not a variable GitLab defines, so it is a user variable, and the allowlist entry does not name it", key)
				f.Hint = "get the entry to name it with a pinned value or pattern (writ allowlist entry includes it), or remove it from GitLab; if it is a predefined variable of a GitLab newer than this writ, upgrade writ (until then, an entry that names it lets GitLab's value through)"
			}
			d.fail(f)
			continue
		}
		if !variableNameAdmissible(d, a, hostEnv) || !variableKindMatches(d, a, v) || !variableRawMatches(d, a, v) {
			continue
		}
		if strings.IndexByte(v.Value, 0) >= 0 {
			d.fail(Failure{Check: CheckVariables, Message: fmt.Sprintf("variable %s holds a NUL byte, which no process environment can carry", key)})
			continue
		}
		if !variableValueMatches(d, a, v) {
			continue
		}
		// The entry's kind and, for a pinned variable, the entry's bytes:
		// what reaches the job is what was signed.
		value := v.Value
		if a.HasValue {
			value = a.Value
		}
		out = append(out, AdmittedVariable{Name: v.Key, Value: value, File: a.File, raw: a.Raw})
	}
	// A pinned value is part of the signed definition: the job gets it even
	// when GitLab leaves the variable out, so omitting a variable cannot
	// change what runs.
	for i := range allowed {
		a := &allowed[i]
		if a.HasValue && !seen[a.Name] && variableNameAdmissible(d, a, hostEnv) {
			out = append(out, AdmittedVariable{Name: a.Name, Value: a.Value, File: a.File, raw: a.Raw})
		}
	}
	return out
}

// variableNameAdmissible refuses an entry's variable whose name writ sets
// (PATH, HOME, LANG, CI_*, WRIT_*, the host's job.env) or that is
// dangerous without the entry's dangerous: true.
func variableNameAdmissible(d *Decision, a *allowlist.Variable, hostEnv map[string]string) bool {
	name := allowlist.Visible(clip(a.Name))
	if why := allowlist.ReservedName(a.Name); why != "" {
		d.fail(Failure{Check: CheckVariables, Message: fmt.Sprintf("variable %s cannot reach the job: %s", name, why),
			Hint: "remove the variable from the job and from the allowlist entry"})
		return false
	}
	if _, ok := hostEnv[a.Name]; ok {
		d.fail(Failure{Check: CheckVariables, Message: fmt.Sprintf("variable %s is set by this runner host's job.env, which a job variable never overrides", name),
			Hint: "remove the variable from the job and the allowlist entry, or ask the runner's owners to change job.env"})
		return false
	}
	if why := allowlist.DangerousName(a.Name); why != "" && !a.Dangerous {
		d.fail(Failure{Check: CheckVariables, Message: fmt.Sprintf("variable %s is dangerous (%s) and the allowlist entry does not mark it dangerous: true", name, why),
			Hint: "remove the variable from the job, or get the entry to mark it dangerous: true (and pin its value)"})
		return false
	}
	return true
}

// variableKindMatches refuses a variable whose kind differs from the
// entry's: a file variable makes the job see a path instead of the value.
func variableKindMatches(d *Decision, a *allowlist.Variable, v Variable) bool {
	if v.File == a.File {
		return true
	}
	kind := func(file bool) string {
		if file {
			return "a file variable (the job sees a path)"
		}
		return "a value variable (the job sees the value)"
	}
	d.fail(Failure{Check: CheckVariables,
		Message:  fmt.Sprintf("variable %s is %s, but the allowlist entry makes it %s", allowlist.Visible(clip(v.Key)), kind(v.File), kind(a.File)),
		Expected: kind(a.File), Received: kind(v.File),
		Hint: "set the variable's type in GitLab's CI/CD settings to the entry's (Variable or File), or get the entry's file: changed"})
	return false
}

// variableRawMatches refuses a variable GitLab expands when the entry says
// raw, or the reverse: expansion changes what the job sees.
func variableRawMatches(d *Decision, a *allowlist.Variable, v Variable) bool {
	if v.Raw == a.Raw {
		return true
	}
	kind := func(raw bool) string {
		if raw {
			return "raw ($NAME references stay as written)"
		}
		return "expanded ($NAME references are replaced)"
	}
	d.fail(Failure{Check: CheckVariables,
		Message:  fmt.Sprintf("variable %s is %s, but the allowlist entry makes it %s", allowlist.Visible(clip(v.Key)), kind(v.Raw), kind(a.Raw)),
		Expected: kind(a.Raw), Received: kind(v.Raw),
		Hint: "set the variable's \"Expand variable reference\" in GitLab's CI/CD settings (expand: in .gitlab-ci.yml) to match the entry, or get the entry's raw: changed"})
	return false
}

// variableValueMatches refuses a value other than the pinned one, or one
// the entry's pattern does not match in full.
func variableValueMatches(d *Decision, a *allowlist.Variable, v Variable) bool {
	key := allowlist.Visible(clip(v.Key))
	if a.HasValue {
		if v.Value == a.Value {
			return true
		}
		f := Failure{Check: CheckVariables, Message: fmt.Sprintf("variable %s differs from the value pinned by the allowlist entry", key),
			Hint: "set the variable to exactly the pinned value, or get the entry changed"}
		if !v.Masked && !v.File {
			f.Expected, f.Received = allowlist.Visible(a.Value), allowlist.Visible(clip(v.Value))
		}
		d.fail(f)
		return false
	}
	// Allows is the parser's own matcher, so admission and lint agree on
	// what a pattern admits.
	if a.Allows(v.Value) {
		return true
	}
	f := Failure{Check: CheckVariables, Message: fmt.Sprintf("variable %s does not match the allowlist entry's pattern in full", key),
		Expected: allowlist.Visible(a.Pattern), Hint: "give the variable a value the pattern matches, or get the entry changed"}
	if !v.Masked && !v.File {
		f.Received = allowlist.Visible(clip(v.Value))
	}
	d.fail(f)
	return false
}

// EntryFromPayload builds the allowlist entry that would admit the job's
// definition as GitLab sent it, for environment env: the starting point of a
// proposal, to be reviewed. Its ref is the full ref of the job's ref and
// ref_type. Variables that GitLab marks public and not masked are pinned to
// their value and kind; others get allowlist.TODOPattern (their values are
// never shown), which Parse refuses until a maintainer writes a rule, and
// dangerous names are never marked dangerous: a maintainer decides. The
// source repository is GitLab's repo_url without credentials, the mode
// "commit" and no signer set: the reviewer fills those in.
func EntryFromPayload(p *Payload, env string) *allowlist.Entry {
	e := &allowlist.Entry{
		Name: suggestedName(p.Project, p.JobName, env),
		Match: allowlist.Match{
			Project:      p.Project,
			Job:          p.JobName,
			Environments: []string{env},
			Refs:         []string{payloadRef(p)},
		},
		Source: allowlist.Source{Repository: p.RepoURL, Mode: allowlist.ModeCommit},
	}
	for _, s := range p.Steps {
		switch s.Name {
		case "script":
			e.Definition.Script = slices.Clone(s.Script)
		case "after_script":
			e.Definition.AfterScript = slices.Clone(s.Script)
		}
	}
	e.Definition.Image = p.Image.Name
	for _, s := range p.Services {
		e.Definition.Services = append(e.Definition.Services, s.Name)
	}
	seen := map[string]bool{}
	for _, v := range p.Variables {
		if IsPredefined(v.Key) || seen[v.Key] {
			continue
		}
		seen[v.Key] = true
		av := allowlist.Variable{Name: v.Key, File: v.File, Raw: v.Raw}
		if v.Public && !v.Masked && !v.File {
			av.Value, av.HasValue = v.Value, true
		} else {
			av.Pattern = allowlist.TODOPattern
		}
		e.Definition.Variables = append(e.Definition.Variables, av)
	}
	if e.Definition.Uploads = uploadsFromPayload(p); e.Definition.Uploads == nil {
		e.Definition.Artifacts = p.Artifacts > 0
	}
	e.Definition.Cache = p.Cache > 0
	e.Definition.Dependencies = p.Dependencies > 0
	return e
}

// IncludeVariableSets makes e, an entry built by EntryFromPayload from p,
// include the variable sets names, whose variables are included (as
// allowlist.Definition.Included holds them): a variable of the job that
// an included rule admits as it is (same kind, raw flag and an admitted
// value) is left to the set. One a set admits otherwise stays in the
// entry, where lint reports the clash for a maintainer to resolve.
func IncludeVariableSets(e *allowlist.Entry, p *Payload, names []string, included []allowlist.Variable) {
	e.Definition.VariableSets = slices.Clone(names)
	e.Definition.Included = included
	e.Definition.Variables = slices.DeleteFunc(e.Definition.Variables, func(v allowlist.Variable) bool {
		return slices.ContainsFunc(included, func(iv allowlist.Variable) bool {
			return iv.Name == v.Name && iv.File == v.File && iv.Raw == v.Raw && admitsValue(iv, payloadValue(p, v.Name))
		})
	})
}

var nameUnsafe = lazyre.New(`[^a-z0-9]+`)

func suggestedName(project, job, env string) string {
	s := strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(project+"-"+job+"-"+env), "-"), "-")
	if s == "" {
		s = "job"
	}
	if len(s) > 100 {
		s = strings.TrimRight(s[:100], "-")
	}
	return s
}

// payloadRef is the full ref a job claims, for suggestions; when the ref or
// its kind is unusable it is GitLab's ref as sent, which Parse refuses
// with a message saying what to write.
func payloadRef(p *Payload) string {
	if full, err := allowlist.JobRef(p.RefType, p.Ref); err == nil {
		return full
	}
	return p.Ref
}
