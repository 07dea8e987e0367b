package allowlist

import (
	"errors"
	"os"
	"strings"
	"testing"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// setsDoc is baseLines with variable sets at the top level (lines 9-14)
// and an entry that includes them (lines 23-28).
// The caller's edits use the lines of the result.
func setsDoc(edits ...edit) string {
	doc := edited(
		addAfter(8,
			"variable_sets:", // 9
			"  aws-prod:",    // 10
			"    AWS_ACCOUNT_ID: {value: '123456789012'}",                       // 11
			"    DEPLOY_ROLE: {value: 'arn:aws:iam::${AWS_ACCOUNT_ID}:role/x'}", // 12
			"  registry:", // 13
			"    DEPLOY_IMAGE_DIGEST: {value: '"+digest+"'}", // 14
		),
		addAfter(16,
			"      image: $AWS_ACCOUNT_ID.dkr.ecr.us-west-2.amazonaws.com/idp@$DEPLOY_IMAGE_DIGEST", // 23
			"      variable_sets: [aws-prod, registry]",                                             // 24
			"      variables:",                                     // 25
			"        ENV_NAME: {value: prod}",                      // 26
			"        HOST: {value: 'idp.${ENV_NAME}.example.gov'}", // 27
			"        CI_ASG_TARGET: {pattern: '^asg-[a-z]+$'}",     // 28
		),
	)
	l := strings.Split(strings.TrimSuffix(doc, "\n"), "\n")
	for _, e := range edits {
		l = e(l)
	}
	return strings.Join(l, "\n") + "\n"
}

func TestVariableSets(t *testing.T) {
	t.Parallel()
	a, warns, err := Lint(FileName, []byte(setsDoc()), nil)
	if err != nil || len(warns) > 0 {
		t.Fatalf("%v %v", err, warns)
	}
	d := &a.Jobs[0].Definition
	var names []string
	for _, v := range d.AllVariables() {
		names = append(names, v.Name)
	}
	if got := strings.Join(names, " "); got != "AWS_ACCOUNT_ID DEPLOY_ROLE DEPLOY_IMAGE_DIGEST ENV_NAME HOST CI_ASG_TARGET" {
		t.Errorf("variables %s", got)
	}
	img, err := ExpandImage(d, d.Image)
	if want := "123456789012.dkr.ecr.us-west-2.amazonaws.com/idp@" + digest; err != nil || img != want {
		t.Errorf("image %q %v, want %q", img, err, want)
	}
	// The round trip keeps the sets and their inclusion.
	out, err := Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(FileName, out, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	requireSame(t, b, a)
	entry, err := MarshalEntry(b.Jobs[0])
	if err != nil || !strings.Contains(string(entry), "variable_sets: [aws-prod, registry]") {
		t.Errorf("MarshalEntry: %v\n%s", err, entry)
	}
}

func TestVariableSetsRefuse(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown set", setsDoc(setLine(24, "      variable_sets: [aws-prd, registry]")),
			[]string{`23:14|refers to $AWS_ACCOUNT_ID, which is not a variable of the entry`, `24:23|variable set "aws-prd" is not defined: define it under variable_sets at the top level (did you mean "aws-prod"?)`}},
		{"entry and set both define", setsDoc(setLine(28, "        AWS_ACCOUNT_ID: {value: '1'}")),
			[]string{`24:23|variable set "aws-prod" defines AWS_ACCOUNT_ID, which the entry's own variables (line 28) also define`}},
		{"two sets define", setsDoc(addAfter(14, "    AWS_ACCOUNT_ID: {value: '1'}")),
			[]string{`25:33|variable set "registry" defines AWS_ACCOUNT_ID, which variable set "aws-prod" also define`}},
		{"reference to an unadmitted name", setsDoc(setLine(27, "        HOST: {value: 'idp.${ENVNAME}.example.gov'}")),
			[]string{`27:9|definition: variable HOST refers to $ENVNAME, which the entry does not admit`}},
		{"reference to a GitLab variable", setsDoc(setLine(27, "        HOST: {value: '$CI_JOB_TOKEN'}")),
			[]string{`27:9|variable HOST refers to $CI_JOB_TOKEN, a GitLab variable that writ never passes to a job`}},
		{"shell default syntax", setsDoc(setLine(27, "        HOST: {value: '${ENV_NAME:-prod}'}")),
			[]string{`27:9|refers to ${ENV_NAME:-prod}: GitLab Runner has no shell defaults or substitutions`}},
		{"set refers outside itself", setsDoc(setLine(14, "    DEPLOY_IMAGE_DIGEST: {value: '$AWS_ACCOUNT_ID'}")),
			// The image still expands, one level deep as the runner does.
			[]string{`14:5|variable set registry: variable DEPLOY_IMAGE_DIGEST refers to $AWS_ACCOUNT_ID`,
				`23:14|expands to "123456789012.dkr.ecr.us-west-2.amazonaws.com/idp@123456789012", which is not pinned by digest`}},
		{"image from a pattern", setsDoc(setLine(14, "    DEPLOY_IMAGE_DIGEST: {pattern: '^sha256:[0-9a-f]{64}$'}")),
			[]string{`23:14|refers to $DEPLOY_IMAGE_DIGEST, which the entry admits by pattern: pin it with value:`}},
		{"image from nothing", setsDoc(setLine(24, "      variable_sets: [aws-prod]"), setLine(13, "  registry: {DEPLOY_IMAGE_DIGEST: {value: x}}"), delLine(14)),
			[]string{`22:14|refers to $DEPLOY_IMAGE_DIGEST, which is not a variable of the entry`}},
		{"image not pinned after expansion", setsDoc(setLine(14, "    DEPLOY_IMAGE_DIGEST: {value: 'latest'}")),
			[]string{`23:14|expands to "123456789012.dkr.ecr.us-west-2.amazonaws.com/idp@latest", which is not pinned by digest`}},
		{"expand is not a key", setsDoc(setLine(26, "        ENV_NAME: {value: prod, expand: false}")),
			[]string{`26:33|unknown key "expand" in variable ENV_NAME: use one of value, pattern, file, raw, dangerous`}},
		{"empty set", setsDoc(addAfter(14, "  empty: {}")),
			[]string{`15:3|variable set empty is empty`}},
		{"null set", setsDoc(addAfter(14, "  empty:")),
			[]string{`15:3|variable set empty is empty`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(FileName, []byte(c.doc), nil)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %v, want ErrorList", err)
			}
			checkErrors(t, list, c.want)
		})
	}
}

func TestVariableSetsWarnUnused(t *testing.T) {
	t.Parallel()
	_, warns, err := Lint(FileName, []byte(setsDoc(addAfter(14, "  spare:", "    X: {value: x}"))), nil)
	if err != nil || len(warns) != 1 || warns[0].Line != 15 || !strings.Contains(warns[0].Msg, `variable set "spare" is not used by any entry`) {
		t.Fatalf("%v %v", err, warns)
	}
}

// TestRawValueNotChecked: a raw value is never expanded, so its $ text
// needs no admitted name, and raw round-trips.
func TestRawValueNotChecked(t *testing.T) {
	t.Parallel()
	a, err := Parse(FileName, []byte(setsDoc(setLine(27, "        HOST: {value: '$CI_JOB_TOKEN', raw: true}"))), nil)
	if err != nil {
		t.Fatal(err)
	}
	v := a.Jobs[0].Definition.Variables[1]
	if v.Name != "HOST" || !v.Raw {
		t.Fatalf("%+v", v)
	}
	out, _ := MarshalEntry(a.Jobs[0])
	if !strings.Contains(string(out), "HOST: {value: $CI_JOB_TOKEN, raw: true}") && !strings.Contains(string(out), "HOST: {value: \"$CI_JOB_TOKEN\", raw: true}") {
		t.Errorf("marshalled:\n%s", out)
	}
}

func TestReservedCINames(t *testing.T) {
	t.Parallel()
	for _, n := range []string{"CI_ASG_TARGET", "CI_DEPLOY_ENV", "GITLAB_DEPLOY_ROLE"} {
		if why := ReservedName(n); why != "" || Predefined(n) {
			t.Errorf("user variable %s reserved: %s", n, why)
		}
	}
	for _, n := range ProvidedNames() {
		if ReservedName(n) == "" {
			t.Errorf("%s, which writ sets, is not reserved", n)
		}
	}
}

// TestDocsVariableSetsExample: the variable sets example in
// docs/allowlist.md lints clean, and expands as the text under it says.
func TestDocsVariableSetsExample(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile("../docs/allowlist.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(md), "<!-- CHECKED: variable sets example (allowlist.TestDocsVariableSetsExample) -->\n```yaml\n")
	if !ok {
		t.Fatal("docs/allowlist.md has no variable sets example")
	}
	yml, _, _ := strings.Cut(rest, "```\n")
	a, warns, err := Lint(FileName, []byte(yml), nil)
	if err != nil || len(warns) > 0 {
		t.Fatalf("the example does not lint clean: %v %v", err, warns)
	}
	d := &a.Jobs[0].Definition
	img, err := ExpandImage(d, d.Image)
	if err != nil || !strings.HasPrefix(img, "123456789012.dkr.ecr.us-west-2.amazonaws.com/deploy@sha256:0123") || !strings.Contains(rest, "runs\nin `"+img[:len("123456789012.dkr.ecr.us-west-2.amazonaws.com/deploy@sha256:0123")]+"…`") {
		t.Errorf("image %q %v", img, err)
	}
}

// TestDocsListProvidedVariables: docs/allowlist.md's table of the
// variables writ provides is ProvidedNames with their sources, row for row.
func TestDocsListProvidedVariables(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile("../docs/allowlist.md")
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	want.WriteString("| variable | value and source |\n|---|---|\n")
	for _, n := range ProvidedNames() {
		want.WriteString("| `" + n + "` | " + strings.ReplaceAll(ProvidedSource(n), "|", `\|`) + " |\n")
	}
	if !strings.Contains(string(md), want.String()) {
		t.Errorf("docs/allowlist.md lacks the table of provided variables; want:\n%s", want.String())
	}
}

// TestVariableSetsSplitParse: a large allowlist, read one entry at a
// time, resolves variable sets as the whole-file parse does.
func TestVariableSetsSplitParse(t *testing.T) {
	t.Parallel()
	if !checkSplit(t, []byte(setsDoc()), nil) {
		t.Fatal("the split parse did not apply")
	}
}

// TestDiffShowsSetChangesOnEntries: a change to a variable set is a change
// to every entry that includes it, and the review says so.
func TestDiffShowsSetChangesOnEntries(t *testing.T) {
	t.Parallel()
	old, err := Parse(FileName, []byte(setsDoc()), nil)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := Parse(FileName, []byte(setsDoc(setLine(11, "    AWS_ACCOUNT_ID: {value: '999999999999'}"))), nil)
	if err != nil {
		t.Fatal(err)
	}
	md := Diff(old, changed).Markdown()
	for _, want := range []string{"definition.variables.AWS_ACCOUNT_ID", `value "123456789012"`, `value "999999999999"`} {
		if !strings.Contains(md, want) {
			t.Errorf("the diff lacks %q:\n%s", want, md)
		}
	}
}
