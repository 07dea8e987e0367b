package companion

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// lintJob is one job of GitLab's CI lint response with include_jobs=true
// (GET /projects/:id/ci/lint). client-go's ProjectLintResult has no jobs, so
// writ decodes the response itself.
type lintJob struct {
	Name         string   `json:"name"`
	Stage        string   `json:"stage"`
	BeforeScript []string `json:"before_script"`
	Script       []string `json:"script"`
	AfterScript  []string `json:"after_script"`
	TagList      []string `json:"tag_list"`
	When         string   `json:"when"`
}

// lintResult is GitLab's CI lint response.
type lintResult struct {
	Valid      bool      `json:"valid"`
	Errors     []string  `json:"errors"`
	Warnings   []string  `json:"warnings"`
	MergedYAML string    `json:"merged_yaml"`
	Jobs       []lintJob `json:"jobs"`
}

// ciJob is a job as it would reach a runner, derived from the lint response.
type ciJob struct {
	Name  string
	Stage string
	Tags  []string
	Def   allowlist.Definition
	// Problems prevent an exact entry; Notes are worth a reviewer's eye.
	Problems []string
	Notes    []string
}

// maxMergedYAML bounds the merged configuration writ interprets.
const maxMergedYAML = 16 << 20

var digestRef = lazyre.New(`^[^\s@$]+@sha256:[0-9a-f]{64}$`)

// targets reports whether GitLab would give a job with jobTags to a runner
// with runnerTags: every job tag must be a runner tag. Untagged jobs are not
// proposed: the environment's runners are expected not to run untagged jobs.
func targets(jobTags, runnerTags []string) bool {
	if len(jobTags) == 0 {
		return false
	}
	for _, t := range jobTags {
		found := false
		for _, r := range runnerTags {
			if t == r {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// deriveJobs turns the lint response into ciJobs for the jobs whose tags
// target runnerTags. Scripts come from the lint jobs, exactly as GitLab
// expanded them (before_script and script together form the script a
// runner receives); image, services, variables, timeout, artifacts, cache
// and dependencies come from the merged YAML.
func deriveJobs(res *lintResult, runnerTags []string) ([]*ciJob, error) {
	if len(res.MergedYAML) > maxMergedYAML {
		return nil, fmt.Errorf("GitLab's merged CI configuration is %d bytes; the limit is %d", len(res.MergedYAML), maxMergedYAML)
	}
	cfg, err := parseMerged(res.MergedYAML)
	if err != nil {
		return nil, err
	}
	var out []*ciJob
	seen := map[string]bool{}
	for _, lj := range res.Jobs {
		if !targets(lj.TagList, runnerTags) {
			continue
		}
		if seen[lj.Name] {
			return nil, fmt.Errorf("GitLab's lint response lists job %q twice", lj.Name)
		}
		seen[lj.Name] = true
		j := &ciJob{Name: lj.Name, Stage: lj.Stage, Tags: lj.TagList}
		j.Def.Script = append(append([]string{}, lj.BeforeScript...), lj.Script...)
		j.Def.AfterScript = append([]string{}, lj.AfterScript...)
		if len(j.Def.AfterScript) == 0 {
			j.Def.AfterScript = nil
		}
		if len(j.Def.Script) == 0 {
			j.Problems = append(j.Problems, "GitLab reports no script for this job")
		}
		cfg.fill(j)
		out = append(out, j)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// mergedConfig is the merged CI configuration (includes, extends and
// !reference already resolved by GitLab), keys normalised.
type mergedConfig struct {
	root   map[string]any
	stages []string
}

// parseMerged decodes merged_yaml. GitLab has emitted it with plain keys and,
// in older versions, with Ruby symbol keys (":script:"); both are accepted.
func parseMerged(s string) (*mergedConfig, error) {
	var v any
	if strings.TrimSpace(s) != "" {
		if err := yaml.Unmarshal([]byte(s), &v); err != nil {
			return nil, fmt.Errorf("GitLab's merged CI configuration is not valid YAML: %s", sanitize(err.Error(), 200))
		}
	}
	v = normKeys(v, 0)
	root, _ := v.(map[string]any)
	if root == nil {
		root = map[string]any{}
	}
	mc := &mergedConfig{root: root}
	if st, ok := root["stages"].([]any); ok {
		for _, x := range st {
			if s, ok := x.(string); ok {
				mc.stages = append(mc.stages, s)
			}
		}
	} else {
		mc.stages = []string{"build", "test", "deploy"}
	}
	mc.stages = append(append([]string{".pre"}, mc.stages...), ".post")
	return mc, nil
}

// normKeys strips Ruby's symbol colon from mapping keys and makes every key
// a string.
func normKeys(v any, depth int) any {
	if depth > 64 {
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[strings.TrimPrefix(k, ":")] = normKeys(val, depth+1)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[strings.TrimPrefix(fmt.Sprint(k), ":")] = normKeys(val, depth+1)
		}
		return out
	case []any:
		for i := range x {
			x[i] = normKeys(x[i], depth+1)
		}
		return x
	}
	return v
}

func (mc *mergedConfig) job(name string) map[string]any {
	m, _ := mc.root[name].(map[string]any)
	return m
}

// inherits reports whether job j takes the global (default: or top-level)
// key: inherit:default / inherit:variables may be false or a list.
func inherits(j map[string]any, kind, key string) bool {
	inh, _ := j["inherit"].(map[string]any)
	if inh == nil {
		return true
	}
	switch v := inh[kind].(type) {
	case bool:
		return v
	case []any:
		for _, x := range v {
			if s, _ := x.(string); s == key {
				return true
			}
		}
		return false
	}
	return true
}

// lookup returns the job's own key, else default:'s, else the deprecated
// top-level global, honouring inherit:default.
func (mc *mergedConfig) lookup(j map[string]any, key string) (any, bool) {
	if v, ok := j[key]; ok {
		return v, true
	}
	if !inherits(j, "default", key) {
		return nil, false
	}
	if d, ok := mc.root["default"].(map[string]any); ok {
		if v, ok := d[key]; ok {
			return v, true
		}
	}
	switch key {
	case "image", "services", "cache", "timeout":
		if v, ok := mc.root[key]; ok {
			return v, true
		}
	}
	return nil, false
}

func (mc *mergedConfig) fill(j *ciJob) {
	cj := mc.job(j.Name)
	if cj == nil {
		// Matrix and parallel jobs are named "job 1/2" or "job: [a]" in the
		// lint response; their configuration is under the base name.
		base := j.Name
		if i := strings.LastIndex(base, " "); i > 0 && strings.Contains(base[i:], "/") {
			base = base[:i]
		} else if i := strings.Index(base, ": ["); i > 0 {
			base = base[:i]
		}
		cj = mc.job(base)
		if cj == nil {
			j.Problems = append(j.Problems, "the job is missing from GitLab's merged configuration; write image, variables and timeout by hand")
			return
		}
		j.Notes = append(j.Notes, "parallel/matrix job: its matrix variables are not in the entry; add them by hand")
	}
	if v, ok := mc.lookup(cj, "image"); ok {
		j.Def.Image = j.imageRef(v, "image")
	}
	if v, ok := mc.lookup(cj, "services"); ok {
		list, _ := v.([]any)
		for _, s := range list {
			if ref := j.imageRef(s, "service"); ref != "" {
				j.Def.Services = append(j.Def.Services, ref)
			}
		}
	}
	j.Def.Variables = mc.variables(j, cj)
	if v, ok := mc.lookup(cj, "timeout"); ok {
		s := fmt.Sprint(v)
		d, err := parseGitLabDuration(s)
		switch {
		case err != nil:
			j.Problems = append(j.Problems, fmt.Sprintf("timeout %q: %v; write the entry's timeout by hand", sanitize(s, 40), err))
		case d > 24*time.Hour:
			j.Problems = append(j.Problems, fmt.Sprintf("timeout %q is more than the allowlist's limit of 24h", sanitize(s, 40)))
		default:
			j.Def.Timeout = d
		}
	}
	if v, ok := mc.lookup(cj, "artifacts"); ok && v != nil {
		j.artifactsFill(v)
	}
	if v, ok := mc.lookup(cj, "cache"); ok && nonEmpty(v) {
		j.Def.Cache = true
	}
	j.Def.Dependencies = mc.dependencies(j, cj)
}

func nonEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// imageRef reads an image or service (a name, or a mapping with name) and
// checks it is pinned by digest, as the allowlist requires.
func (j *ciJob) imageRef(v any, what string) string {
	var name string
	switch x := v.(type) {
	case string:
		name = x
	case map[string]any:
		name, _ = x["name"].(string)
		for k := range x {
			switch k {
			case "name", "pull_policy":
			default:
				j.Notes = append(j.Notes, fmt.Sprintf("%s option %q is not part of the entry", what, k))
			}
		}
	case nil:
		return ""
	}
	if name == "" {
		j.Problems = append(j.Problems, what+" has no name")
		return ""
	}
	if !digestRef.MatchString(name) {
		j.Problems = append(j.Problems, fmt.Sprintf("%s %q is not pinned by digest: use name@sha256:<digest> in .gitlab-ci.yml (docker buildx imagetools inspect NAME shows it)", what, sanitize(name, 120)))
	}
	return name
}

// variables merges top-level and job variables (the job's win), each
// pinned to its exact value. expand:false and descriptions are dropped.
func (mc *mergedConfig) variables(j *ciJob, cj map[string]any) []allowlist.Variable {
	vals := map[string]string{}
	add := func(v any, filter func(string) bool) {
		m, _ := v.(map[string]any)
		for k, val := range m {
			if filter != nil && !filter(k) {
				continue
			}
			if vm, ok := val.(map[string]any); ok {
				val = vm["value"]
			}
			s, ok := scalarString(val)
			if !ok {
				j.Problems = append(j.Problems, fmt.Sprintf("variable %s has a value writ cannot pin", sanitize(k, 60)))
				continue
			}
			vals[k] = s
		}
	}
	if g, ok := mc.root["variables"]; ok {
		add(g, func(k string) bool { return inherits(cj, "variables", k) })
	}
	if v, ok := cj["variables"]; ok {
		add(v, nil)
	}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []allowlist.Variable
	for _, k := range names {
		out = append(out, allowlist.Variable{Name: k, Value: vals[k], HasValue: true})
	}
	return out
}

// scalarString renders a YAML scalar as GitLab passes it to a job.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case nil:
		return "", true
	case bool:
		return strconv.FormatBool(x), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

// dependencies reports whether GitLab would pass artifacts of other jobs to
// this one: an explicit non-empty dependencies list; or, without one, needs
// naming a job with artifacts, or (without needs) any job of an earlier
// stage with artifacts.
func (mc *mergedConfig) dependencies(j *ciJob, cj map[string]any) bool {
	if d, ok := cj["dependencies"]; ok {
		list, _ := d.([]any)
		return len(list) > 0
	}
	hasArtifacts := func(name string) bool {
		o := mc.job(name)
		if o == nil {
			return false
		}
		v, ok := mc.lookup(o, "artifacts")
		return ok && v != nil
	}
	if n, ok := cj["needs"]; ok {
		list, _ := n.([]any)
		for _, x := range list {
			switch y := x.(type) {
			case string:
				if hasArtifacts(y) {
					return true
				}
			case map[string]any:
				if a, ok := y["artifacts"].(bool); ok && !a {
					continue
				}
				if name, _ := y["job"].(string); name != "" && hasArtifacts(name) {
					return true
				}
				if _, ok := y["pipeline"]; ok {
					return true
				}
				if _, ok := y["project"]; ok {
					return true
				}
			}
		}
		return false
	}
	my := stageIndex(mc.stages, j.Stage)
	for name, v := range mc.root {
		o, ok := v.(map[string]any)
		if !ok || name == j.Name || strings.HasPrefix(name, ".") {
			continue
		}
		if _, isJob := o["script"]; !isJob {
			if _, trig := o["trigger"]; !trig {
				continue
			}
		}
		st, _ := o["stage"].(string)
		if st == "" {
			st = "test"
		}
		if stageIndex(mc.stages, st) < my && hasArtifacts(name) {
			return true
		}
	}
	return false
}

func stageIndex(stages []string, s string) int {
	for i, x := range stages {
		if x == s {
			return i
		}
	}
	return len(stages)
}

var durationPart = lazyre.New(`^([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)`)

// parseGitLabDuration parses GitLab's human durations ("1h 30m", "3 hours",
// "90 minutes", "3600"); a bare number is seconds.
func parseGitLabDuration(s string) (time.Duration, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	if in == "" {
		return 0, errors.New("empty duration")
	}
	var total time.Duration
	for in != "" {
		m := durationPart.FindStringSubmatch(in)
		if m == nil {
			return 0, fmt.Errorf("cannot read %q", in)
		}
		n, err := strconv.ParseFloat(m[1], 64)
		if err != nil || n > 1e7 {
			return 0, fmt.Errorf("cannot read %q", m[1])
		}
		var unit time.Duration
		switch m[2] {
		case "", "s", "sec", "secs", "second", "seconds":
			unit = time.Second
		case "m", "min", "mins", "minute", "minutes":
			unit = time.Minute
		case "h", "hr", "hrs", "hour", "hours":
			unit = time.Hour
		case "d", "day", "days":
			unit = 24 * time.Hour
		case "w", "wk", "wks", "week", "weeks":
			unit = 7 * 24 * time.Hour
		default:
			return 0, fmt.Errorf("unknown unit %q", m[2])
		}
		total += time.Duration(n * float64(unit))
		in = strings.TrimLeft(in[len(m[0]):], " ,")
		in = strings.TrimPrefix(in, "and ")
	}
	if total <= 0 {
		return 0, errors.New("not more than zero")
	}
	return total, nil
}
