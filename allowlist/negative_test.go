package allowlist

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// bobSSH is a real ed25519 public key made by ssh-keygen (its private half
// was discarded); format tests need a well-formed key, not a signature.
const bobSSH = "bob@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjIOV/BS6JM97dS43zzOp7fyifDILED8hT/pHDdvUO9"

// baseDoc is a minimal valid allowlist. The negative tests edit it line by
// line, so the line numbers in the comments on the right matter.
var baseLines = []string{
	"schema: writ/v2",                   // 1
	"repository: acme/deploy-allowlist", // 2
	"version: 7",                        // 3
	"expires: 2027-03-01T00:00:00Z",     // 4
	"signers:",                          // 5
	"  web-team:",                       // 6
	"    ssh:",                          // 7
	"      - " + bobSSH,                 // 8
	"jobs:",                             // 9
	"  - name: web-deploy",              // 10
	"    match:",                        // 11
	"      project: acme/web",           // 12
	"      job: deploy",                 // 13
	"      environments: [production]",  // 14
	"      refs: [refs/heads/main]",     // 15
	"    definition:",                   // 16
	"      script:",                     // 17
	"        - ./deploy.sh",             // 18
	"    source:",                       // 19
	"      repository: https://gitlab.example.com/acme/web.git", // 20
	"      signers: [web-team]",                                 // 21
	"      mode: commit",                                        // 22
}

// edit describes a change to baseLines.
type edit func([]string) []string

// setLine replaces line n (1-based).
func setLine(n int, text string) edit {
	return func(l []string) []string { l[n-1] = text; return l }
}

// addAfter inserts lines after line n (0 inserts at the top).
func addAfter(n int, text ...string) edit {
	return func(l []string) []string {
		out := append([]string{}, l[:n]...)
		out = append(out, text...)
		return append(out, l[n:]...)
	}
}

// delLine removes line n.
func delLine(n int) edit {
	return func(l []string) []string { return append(append([]string{}, l[:n-1]...), l[n:]...) }
}

func edited(edits ...edit) string {
	l := append([]string{}, baseLines...)
	// Apply from the last edit so that each edit's line numbers refer to
	// baseLines as written above.
	for i := len(edits) - 1; i >= 0; i-- {
		l = edits[i](l)
	}
	return strings.Join(l, "\n") + "\n"
}

// secondEntry is a job entry appended after line 22 (so it starts at line 23).
// fullRef makes a short name a branch; a full ref stays as it is.
func fullRef(ref string) string {
	if strings.HasPrefix(ref, "refs/") {
		return ref
	}
	return "refs/heads/" + ref
}

func secondEntry(name, env, ref string) edit {
	return addAfter(22,
		"  - name: "+name,
		"    match:",
		"      project: acme/web",
		"      job: deploy",
		"      environments: ["+env+"]",
		"      refs: ["+fullRef(ref)+"]",
		"    definition:",
		"      script: [./other.sh]",
		"    source:",
		"      repository: https://gitlab.example.com/acme/web.git",
		"      signers: [web-team]",
		"      mode: commit",
	)
}

type negCase struct {
	name string
	doc  string
	// want holds "line:column|message part" for every expected error, in
	// position order; the test fails on any other error.
	want []string
}

func TestBaseDocIsValid(t *testing.T) {
	t.Parallel()
	a, warns, err := Lint(FileName, []byte(edited()), nil)
	if err != nil || len(warns) > 0 {
		t.Fatalf("base document: %v %v", err, warns)
	}
	if len(a.Jobs) != 1 || a.Jobs[0].Name != "web-deploy" || a.Signers["web-team"].SSH[0] != bobSSH {
		t.Fatalf("base document parsed wrong: %+v", a)
	}
}

func negativeCases() []negCase {
	return []negCase{
		// Whole-file character checks.
		{"invalid utf-8", edited(setLine(13, "      job: dep\xffloy")), []string{"13:15|invalid UTF-8 byte 0xFF"}},
		{"bom", "\ufeff" + edited(), []string{"1:1|byte order mark"}},
		{"carriage return", edited(setLine(13, "      job: deploy\r")), []string{"13:18|carriage return"}},
		{"crlf file", "schema: writ/v2\r\nversion: 7\r\n", []string{"1:16|carriage return", "2:11|carriage return"}},
		{"tab in value", edited(setLine(18, "        - ./deploy.sh\t--now")), []string{"18:22|tab (U+0009"}},
		{"escape char", edited(setLine(18, "        - ./deploy.sh\x1b[31m")), []string{"18:22|control character U+001B ESCAPE"}},
		{"nul byte", edited(setLine(18, "        - ./deploy.sh\x00")), []string{"18:22|control character U+0000 NULL"}},
		{"delete", edited(setLine(18, "        - ./deploy.sh\x7f")), []string{"18:22|U+007F DELETE"}},
		{"c1 control", edited(setLine(18, "        - ./deploy.sh\u0085")), []string{"18:22|U+0085 C1 CONTROL"}},
		{"noncharacter", edited(setLine(18, "        - ./deploy.sh\ufdd0")), []string{"18:22|noncharacter U+FDD0"}},
		{"right-to-left override", edited(setLine(18, "        - ./deploy.sh \u202e--now")), []string{"18:23|U+202E RIGHT-TO-LEFT OVERRIDE"}},
		{"columns count characters", edited(setLine(18, "        - echo é\u202e")), []string{"18:17|U+202E RIGHT-TO-LEFT OVERRIDE"}},
		{"zero width space", edited(setLine(13, "      job: de\u200bploy")), []string{"13:14|U+200B ZERO WIDTH SPACE"}},
		{"zero width joiner", edited(setLine(13, "      job: de\u200dploy")), []string{"13:14|U+200D ZERO WIDTH JOINER"}},
		{"left-to-right isolate", edited(setLine(13, "      job: de\u2066ploy")), []string{"13:14|U+2066 LEFT-TO-RIGHT ISOLATE"}},
		{"arabic letter mark", edited(setLine(13, "      job: de\u061cploy")), []string{"13:14|U+061C ARABIC LETTER MARK"}},
		{"soft hyphen", edited(setLine(13, "      job: de\u00adploy")), []string{"13:14|U+00AD SOFT HYPHEN"}},
		{"combining grapheme joiner", edited(setLine(13, "      job: de\u034fploy")), []string{"13:14|U+034F COMBINING GRAPHEME JOINER"}},
		{"hangul filler", edited(setLine(13, "      job: de\u3164ploy")), []string{"13:14|U+3164 HANGUL FILLER"}},
		{"halfwidth hangul filler", edited(setLine(13, "      job: de\uffa0ploy")), []string{"13:14|U+FFA0 HALFWIDTH HANGUL FILLER"}},
		{"hangul choseong filler", edited(setLine(13, "      job: de\u115fploy")), []string{"13:14|U+115F HANGUL CHOSEONG FILLER"}},
		{"khmer inherent vowel", edited(setLine(13, "      job: de\u17b4ploy")), []string{"13:14|U+17B4 KHMER VOWEL INHERENT AQ"}},
		{"mongolian vowel separator", edited(setLine(13, "      job: de\u180eploy")), []string{"13:14|U+180E MONGOLIAN VOWEL SEPARATOR"}},
		{"variation selector", edited(setLine(13, "      job: de\ufe0fploy")), []string{"13:14|U+FE0F VARIATION SELECTOR-16"}},
		{"zero width no-break space", edited(setLine(13, "      job: de\ufeffploy")), []string{"13:14|U+FEFF ZERO WIDTH NO-BREAK SPACE"}},
		{"interlinear annotation", edited(setLine(13, "      job: de\ufff9ploy")), []string{"13:14|U+FFF9 INTERLINEAR ANNOTATION ANCHOR"}},
		{"tag character", edited(setLine(13, "      job: de\U000E0041ploy")), []string{"13:14|U+E0041 TAG CHARACTER"}},
		{"no-break space", edited(setLine(13, "      job: de\u00a0ploy")), []string{"13:14|U+00A0 NO-BREAK SPACE"}},
		{"ideographic space", edited(setLine(13, "      job: de\u3000ploy")), []string{"13:14|U+3000 IDEOGRAPHIC SPACE"}},
		{"word joiner", edited(setLine(13, "      job: de\u2060ploy")), []string{"13:14|U+2060 WORD JOINER"}},
		{"line separator", edited(setLine(13, "      job: de\u2028ploy")), []string{"13:14|U+2028 LINE SEPARATOR"}},
		{"several characters, all reported", edited(setLine(12, "      project: acme/w\u200beb"), setLine(18, "        - ./deploy.sh \u202e")),
			[]string{"12:16|is not a GitLab project path", "12:22|U+200B", "18:23|U+202E"}},

		// YAML features an allowlist refuses.
		{"anchor", edited(setLine(14, "      environments: &envs [production]")), []string{"14:21|anchor &envs"}},
		{"alias", edited(setLine(14, "      environments: &envs [production]"), setLine(15, "      refs: *envs")),
			[]string{"14:21|anchor &envs", "15:13|alias *envs"}},
		{"merge key", edited(addAfter(11, "      <<: {project: acme/web}"), delLine(12)), []string{"12:7|merge key <<", `12:7|match: missing required key "project"`}},
		{"explicit standard tag", edited(setLine(13, "      job: !!str deploy")), []string{"13:12|explicit tag !!str"}},
		{"explicit local tag", edited(setLine(13, "      job: !foo deploy")), []string{"13:12|explicit tag !foo"}},
		{"non-specific tag", edited(setLine(3, "version: ! 7")), []string{"3:10|explicit tag !"}},
		{"tag on a mapping", edited(setLine(11, "    match: !!map")), []string{"11:12|explicit tag !!map"}},
		{"duplicate top-level key", edited(addAfter(3, "version: 8")), []string{`4:1|duplicate key "version" (first at line 3)`}},
		{"duplicate nested key", edited(addAfter(13, "      job: other")), []string{`14:7|duplicate key "job" (first at line 13)`}},
		{"duplicate key, quoted", edited(addAfter(13, `      "job": other`)), []string{`14:7|duplicate key "job"`}},
		{"duplicate key in flow mapping", edited(addAfter(4, "x: {a: 1, a: 2}")),
			[]string{`5:1|unknown key "x"`, `5:11|duplicate key "a"`}},
		{"duplicate signer set", edited(addAfter(8, "  web-team:", "    ssh: ["+bobSSH+"]")), []string{`9:3|duplicate key "web-team"`}},
		{"second document", edited() + "---\nschema: writ/v2\n", []string{"23:1|a second YAML document"}},
		{"directive", "%YAML 1.1\n---\n" + edited(), []string{"1:1|YAML directive"}},
		{"root is a list", "- a\n- b\n", []string{"1:1|must be a mapping"}},
		{"root is text", "hello\n", []string{"1:1|must be a mapping"}},
		{"empty file", "", []string{"1:1|holds no allowlist"}},
		{"only comments", "# nothing\n", []string{"1:1|holds no allowlist"}},
		{"syntax error", edited(setLine(13, "      job: [deploy")), []string{"12:0|YAML syntax error"}},
		{"tab indentation", edited(setLine(13, "\tjob: deploy")), []string{"12:0|YAML syntax error", "13:1|tab (U+0009"}},
		{"number key", edited(addAfter(4, "1: one")), []string{"5:1|key 1 is read as a number"}},
		{"complex key", edited(addAfter(4, "? [a]", ": b")), []string{"5:3|a key must be plain text, not a list"}},
		{"deep nesting", edited(addAfter(4, "x: "+strings.Repeat("[", 70)+strings.Repeat("]", 70))),
			[]string{`5:1|unknown key "x"`, "5:68|nesting deeper than 64 levels"}},

		// Keys and values.
		{"unknown top-level key", edited(addAfter(4, "expire: 2027-03-01T00:00:00Z")), []string{`5:1|unknown key "expire" in the top level: use one of schema, repository, version, expires, signers, people, variable_sets, jobs (did you mean "expires"?)`}},
		{"unknown key and missing script", edited(setLine(17, "      scirpt:")),
			[]string{`17:7|unknown key "scirpt" in definition`, `17:7|definition: missing required key "script"`}},
		{"keys are case-sensitive", edited(setLine(22, "      Mode: commit")),
			[]string{`20:7|source: missing required key "mode"`, `22:7|unknown key "Mode" in source: use one of repository, signers, mode, signature, pin, descends_from, allow_rollback, approvals, git, extra (did you mean "mode"?)`}},
		{"missing repository", edited(delLine(2)), []string{`1:1|the top level: missing required key "repository"`}},
		{"missing match", edited(delLine(11), delLine(12), delLine(13), delLine(14), delLine(15)), []string{`10:5|job entry: missing required key "match"`}},
		{"null value", edited(setLine(2, "repository:")), []string{"2:1|repository has no value"}},
		{"tilde null", edited(setLine(2, "repository: ~")), []string{"2:1|repository has no value"}},
		{"explicit null", edited(setLine(13, "      job: null")), []string{"13:7|job has no value"}},
		{"empty text", edited(setLine(2, `repository: ""`)), []string{"2:13|repository is empty"}},
		{"identity with space", edited(setLine(2, `repository: "acme/deploy allowlist"`)), []string{"2:13|contains spaces"}},
		{"schema v3", edited(setLine(1, "schema: writ/v3"), setLine(3, "version: x")), []string{`1:9|schema "writ/v3" is not understood`}},
		{"schema v1 migration", edited(setLine(1, "schema: writ/v1"), setLine(15, "      refs: [main]")),
			[]string{`1:9|schema "writ/v1" is retired: in writ/v1, match.refs did not say whether a name was a branch or a tag, so GitLab's ref_type chose. To migrate: (1) write "schema: writ/v2"`,
				`15:14|ref "main": write the full ref: refs/heads/main for a branch or refs/tags/main for a tag`}},
		{"schema v1 already migrated refs", edited(setLine(1, "schema: writ/v1")), []string{`1:9|schema "writ/v1" is retired`}},
		{"schema missing", edited(delLine(1)), []string{`1:1|missing required key "schema"`}},
		{"version quoted", edited(setLine(3, `version: "7"`)), []string{"3:10|version must be a whole number, not text: remove the quotes"}},
		{"version float", edited(setLine(3, "version: 7.0")), []string{"3:10|version 7.0 is not a whole number: write one without a fraction"}},
		{"version zero", edited(setLine(3, "version: 0")), []string{"3:10|version 0: write a plain decimal number of at least 1"}},
		{"version negative", edited(setLine(3, "version: -1")), []string{"3:10|version -1: write a plain decimal"}},
		{"version hex", edited(setLine(3, "version: 0x7")), []string{"3:10|version 0x7: write a plain decimal"}},
		{"version underscores", edited(setLine(3, "version: 1_000")), []string{"3:10|version 1_000: write a plain decimal"}},
		{"version too large", edited(setLine(3, "version: 9223372036854775808")), []string{"3:10|too large"}},
		{"version list", edited(setLine(3, "version: [7]")), []string{"3:10|version must be a whole number, not a list"}},
		{"expires date only", edited(setLine(4, "expires: 2027-03-01")), []string{`4:10|expires "2027-03-01" is not an RFC 3339 time`}},
		{"expires no zone", edited(setLine(4, `expires: "2027-03-01T00:00:00"`)), []string{`4:10|is not an RFC 3339 time`}},
		{"expires number", edited(setLine(4, "expires: 2027")), []string{"4:10|expires must be an RFC 3339 time such as 2027-03-01T00:00:00Z, not a number"}},
		{"refs float", edited(setLine(15, "      refs: [1.0]")), []string{`15:14|ref: 1.0 is read as a number, not text: quote it: "1.0"`}},
		{"refs bool", edited(setLine(15, "      refs: [true]")), []string{`15:14|ref: true is read as true/false, not text: quote it: "true"`}},
		{"refs date", edited(setLine(15, "      refs: [2024-01-01]")), []string{`15:14|ref: 2024-01-01 is read as a date`}},
		{"refs int", edited(setLine(15, "      refs: [10]")), []string{`15:14|ref: 10 is read as a number`}},
		{"refs not a list", edited(setLine(15, "      refs: main")), []string{"15:13|refs must be a list, not text (a single item is written [item])"}},
		{"refs empty", edited(setLine(15, "      refs: []")), []string{"15:13|refs is empty: list at least one ref"}},
		{"refs null item", edited(setLine(15, "      refs:"), addAfter(15, "        -")), []string{"16:10|ref has no value"}},
		{"refs invalid", edited(setLine(15, "      refs: [refs/heads/feature..x]")), []string{`15:14|ref "refs/heads/feature..x": it must not contain ".."`}},
		{"refs with space", edited(setLine(15, `      refs: ["refs/heads/main "]`)), []string{`15:14|ref "refs/heads/main ": it must not contain spaces`}},
		{"refs lock", edited(setLine(15, `      refs: [refs/tags/a.lock]`)), []string{`15:14|.lock`}},
		{"refs short branch", edited(setLine(15, "      refs: [main]")), []string{`15:14|ref "main": write the full ref: refs/heads/main for a branch or refs/tags/main for a tag`}},
		{"refs heads/", edited(setLine(15, "      refs: [heads/main]")), []string{`15:14|ref "heads/main": write the full ref: refs/heads/main`}},
		{"refs peel syntax", edited(setLine(15, "      refs: ['refs/heads/main^{}']")), []string{`15:14|ref "refs/heads/main^{}": it must not contain spaces, control characters or any of ~ ^ : ? * [ \ (revision syntax such as main^{} or main~0 names a commit, not a ref)`}},
		{"refs ancestry syntax", edited(setLine(15, "      refs: [refs/heads/main~0]")), []string{`15:14|ref "refs/heads/main~0": it must not contain`}},
		{"refs reflog syntax", edited(setLine(15, "      refs: ['refs/heads/main@{1}']")), []string{`15:14|ref "refs/heads/main@{1}": it must not contain "@{"`}},
		{"refs ambiguous heads", edited(setLine(15, "      refs: [refs/heads/heads/main]")), []string{`15:14|ref "refs/heads/heads/main": git would read "heads/main" as another ref (refs/heads/main): rename the branch`}},
		{"refs ambiguous nested", edited(setLine(15, "      refs: [refs/tags/refs/heads/main]")), []string{`15:14|git would read "refs/heads/main" as another ref (refs/heads/main): rename the tag`}},
		{"refs HEAD", edited(setLine(15, "      refs: [refs/heads/HEAD]")), []string{`15:14|git would read "HEAD" as another ref (a special revision name)`}},
		{"refs merge request", edited(setLine(15, "      refs: [refs/merge-requests/1/head]")), []string{`15:14|ref "refs/merge-requests/1/head": writ admits branches (refs/heads/…) and tags (refs/tags/…) only`}},
		{"refs remote", edited(setLine(15, "      refs: [refs/remotes/origin/main]")), []string{`15:14|writ admits branches (refs/heads/…) and tags (refs/tags/…) only`}},
		{"refs empty name", edited(setLine(15, "      refs: [refs/tags/]")), []string{`15:14|ref "refs/tags/": the tag name is empty`}},
		{"refs branch and tag of one name", edited(setLine(15, "      refs: [refs/heads/main, refs/tags/main]")), nil},
		{"tag mode with a branch", edited(setLine(15, "      refs: [refs/tags/v1, refs/heads/main]"), setLine(22, "      mode: tag")),
			[]string{`15:28|ref "refs/heads/main" is a branch, and source mode tag admits only signed tags: list tags (refs/tags/…), or use mode commit or strict for branches`}},
		{"tag mode with tags", edited(setLine(15, "      refs: [refs/tags/v1, refs/tags/v2]"), setLine(22, "      mode: tag")), nil},
		{"environments duplicate", edited(setLine(14, "      environments: [production, production]")), []string{`14:34|environment "production" is listed twice (first at line 14)`}},
		{"environment invalid", edited(setLine(14, "      environments: [prod uction]")), []string{`14:22|environment "prod uction"`}},
		{"environments mapping", edited(setLine(14, "      environments: {production: true}")), []string{`14:21|environments must be a list, not a mapping`}},
		{"project not a path", edited(setLine(12, "      project: web")), []string{`12:16|project "web" is not a GitLab project path`}},
		{"project number", edited(setLine(12, "      project: 12")), []string{`12:16|project: 12 is read as a number`}},
		{"match not a mapping", edited(setLine(11, "    match: [acme/web]"), delLine(12), delLine(13), delLine(14), delLine(15)), []string{"11:12|match must be a mapping of keys (project, job, environments, refs), not a list"}},
		{"entry name invalid", edited(setLine(10, "  - name: web deploy")), []string{`10:11|entry name "web deploy"`}},
		{"entry not a mapping", "schema: writ/v2\nrepository: a/b\nversion: 1\nexpires: 2027-03-01T00:00:00Z\njobs: [foo]\n", []string{"5:8|a job entry must be a mapping"}},
		{"jobs not a list", "schema: writ/v2\nrepository: a/b\nversion: 1\nexpires: 2027-03-01T00:00:00Z\njobs: {}\n", []string{"5:7|jobs must be a list"}},
		{"duplicate entry name", edited(secondEntry("web-deploy", "staging", "main")), []string{`23:5|entry name "web-deploy" is already used at line 10`}},
		{"overlapping entries", edited(secondEntry("web-deploy-2", "staging, production", "main")),
			[]string{`23:5|entry "web-deploy-2" overlaps entry "web-deploy" (line 10): both match job "deploy" of acme/web in environment "production" on ref "refs/heads/main"`}},
		{"disjoint refs do not overlap", edited(secondEntry("web-deploy-2", "production", "release")), nil},
		{"a tag does not overlap the branch of its name", edited(secondEntry("web-deploy-2", "production", "refs/tags/main")), nil},
		{"other job does not overlap", edited(secondEntry("web-deploy-2", "production", "main"), setLine(13, "      job: deploy-2")), nil},
		{"signer set undefined", edited(setLine(21, "      signers: [ops]")), []string{`21:17|signer set "ops" is not defined: define it under signers at the top level (defined: web-team)`}},
		{"signers empty", edited(setLine(21, "      signers: []")), []string{`21:16|signers is empty`}},
		{"mode invalid", edited(setLine(22, "      mode: signed")), []string{`22:13|mode "signed": use commit, tag or strict`}},
		{"pin short", edited(addAfter(22, "      pin: abc123")), []string{`23:12|pin "abc123": write a full commit id`}},
		{"pin upper case", edited(addAfter(22, "      pin: 3F786850E387550FDAB836ED7E6DC881DE23001B")), []string{`23:12|pin "3F786850E387550FDAB836ED7E6DC881DE23001B"`}},
		{"pin as number", edited(addAfter(22, "      pin: 1234567890123456789012345678901234567890")), []string{`23:12|pin: 1234567890123456789012345678901234567890 is read as a number`}},
		{"descends_from invalid", edited(addAfter(22, "      descends_from: main")), []string{`23:22|descends_from "main"`}},
		{"allow_rollback text", edited(addAfter(22, "      allow_rollback: yes")), []string{`23:23|allow_rollback must be true or false, not text`}},
		{"allow_rollback capitalised", edited(addAfter(22, "      allow_rollback: True")), []string{`23:23|allow_rollback: write true in lower case`}},
		{"http repository", edited(setLine(20, "      repository: http://gitlab.example.com/acme/web.git")), []string{`20:19|uses plain http`}},
		{"git protocol repository", edited(setLine(20, "      repository: git://gitlab.example.com/acme/web.git")), []string{`20:19|unauthenticated git://`}},
		{"credentials in repository", edited(setLine(20, "      repository: https://u:p@gitlab.example.com/acme/web.git")), []string{`20:19|contains credentials`}},
		{"user in https repository", edited(setLine(20, "      repository: https://oauth2@gitlab.example.com/acme/web.git")), []string{`20:19|contains credentials`}},
		{"ssh option injection", edited(setLine(20, "      repository: ssh://-oProxyCommand=x/acme/web.git")), []string{`20:19|has no valid host`}},
		{"scp option injection", edited(setLine(20, "      repository: git@-oProxyCommand=x:acme/web.git")), []string{`20:19|is not a repository URL`}},
		{"repository query", edited(setLine(20, "      repository: https://gitlab.example.com/acme/web.git?x=1")), []string{`20:19|query or fragment`}},
		{"repository file with host", edited(setLine(20, "      repository: file://host/srv/web.git")), []string{`20:19|names a host`}},
		{"repository relative", edited(setLine(20, "      repository: ../web.git")), []string{`20:19|is not a repository URL`}},
		{"repository upper-case scheme", edited(setLine(20, "      repository: HTTPS://gitlab.example.com/acme/web.git")), []string{`20:19|upper-case scheme`}},
		{"image not pinned", edited(addAfter(16, "      image: alpine:3.19")), []string{`17:14|image "alpine:3.19" is not pinned by digest`}},
		{"image upper-case digest", edited(addAfter(16, "      image: alpine@sha256:"+strings.Repeat("A", 64))), []string{`17:14|is not a valid image reference pinned by digest`}},
		{"image short digest", edited(addAfter(16, "      image: alpine@sha256:abc")), []string{`17:14|is not a valid image reference`}},
		{"image empty", edited(addAfter(16, `      image: ""`)), []string{`17:14|image is empty`}},
		{"service not pinned", edited(addAfter(16, "      services: [postgres:16]")), []string{`17:18|service "postgres:16" is not pinned by digest`}},
		{"service object", edited(addAfter(16, "      services: [{name: postgres}]")), []string{`17:18|service must be text, not a mapping`}},
		{"script not a list", edited(setLine(17, "      script: ./deploy.sh"), delLine(18)), []string{`17:15|script must be a list, not text`}},
		{"script empty", edited(setLine(17, "      script: []"), delLine(18)), []string{`17:15|script is empty`}},
		{"script item number", edited(setLine(18, "        - 42")), []string{`18:11|script item: 42 is read as a number, not text: quote it: "42"`}},
		{"script item null", edited(setLine(18, "        -")), []string{`18:10|script item has no value`}},
		{"script item list", edited(setLine(18, "        - [a, b]")), []string{`18:11|script item must be text, not a list`}},
		{"script NUL escape", edited(setLine(18, `        - "a\0b"`)), []string{`18:11|NUL character`}},
		{"after_script not a list", edited(addAfter(18, "      after_script: x")), []string{`19:21|after_script must be a list`}},
		{"timeout without unit", edited(addAfter(18, "      timeout: 900")), []string{`19:16|timeout 900 has no unit`}},
		{"timeout zero", edited(addAfter(18, "      timeout: 0s")), []string{`19:16|must be more than zero`}},
		{"timeout negative", edited(addAfter(18, "      timeout: -5m")), []string{`19:16|must be more than zero`}},
		{"timeout too long", edited(addAfter(18, "      timeout: 25h")), []string{`19:16|is more than 24h`}},
		{"timeout garbage", edited(addAfter(18, "      timeout: soon")), []string{`19:16|timeout "soon" is not a duration`}},
		{"artifacts text", edited(addAfter(18, `      artifacts: "true"`)), []string{`19:18|artifacts must be true or false, not text`}},
		{"cache number", edited(addAfter(18, `      cache: 1`)), []string{`19:14|cache must be true or false, not a number`}},
		{"dependencies null", edited(addAfter(18, `      dependencies:`)), []string{`19:7|dependencies has no value`}},
		{"network unknown", edited(addAfter(18, `      network: loopback`)), []string{`19:16|network "loopback": use "host"`}},
		{"variable name invalid", edited(addAfter(18, "      variables:", "        1X: {value: a}")), []string{`20:9|variable name "1X"`}},
		{"variable value number", edited(addAfter(18, "      variables:", "        X: {value: 1}")), []string{`20:20|value of X: 1 is read as a number, not text: quote it: "1"`}},
		{"variable bare", edited(addAfter(18, "      variables:", "        X: prod")), []string{`20:12|variable X must be {value: "prod"} or {pattern: '^...$'}`}},
		{"variable both", edited(addAfter(18, "      variables:", "        X: {value: a, pattern: '^a$'}")), []string{`20:12|variable X has both value and pattern`}},
		{"variable neither", edited(addAfter(18, "      variables:", "        X: {}")), []string{`20:12|variable X needs value or pattern`}},
		{"variable unknown key", edited(addAfter(18, "      variables:", "        X: {values: a}")),
			[]string{`20:12|variable X needs value or pattern`, `20:13|unknown key "values" in variable X: use one of value, pattern, file, raw, dangerous (did you mean "value"?)`}},
		{"variable file", edited(addAfter(18, "      variables:", "        X: {pattern: '^a$', file: true}", "        Y: {value: b, file: false}")), nil},
		{"variable file not a bool", edited(addAfter(18, "      variables:", "        X: {value: a, file: yes}")), []string{`20:29|file must be true or false, not text`}},
		{"variable file null", edited(addAfter(18, "      variables:", "        X: {value: a, file: }")), []string{`20:23|file has no value`}},
		{"variable TODO", edited(addAfter(18, "      variables:", "        X: {pattern: TODO, file: true}")), []string{`20:22|variable X still has the TODO that writ allowlist entry writes`}},
		{"variable BASH_ENV", edited(addAfter(18, "      variables:", "        BASH_ENV: {value: /etc/x}")), []string{`20:9|variable BASH_ENV is dangerous: bash sources the file it names before any script; remove it, or if GitLab must set it, add dangerous: true`}},
		{"variable BASH_ENV marked", edited(addAfter(18, "      variables:", "        BASH_ENV: {value: /etc/x, dangerous: true}")), nil},
		{"variable ENV", edited(addAfter(18, "      variables:", "        ENV: {value: /etc/x}")), []string{`20:9|variable ENV is dangerous`}},
		{"variable LD_PRELOAD", edited(addAfter(18, "      variables:", "        LD_PRELOAD: {pattern: '^/opt/[a-z]+\\.so$'}")), []string{`20:9|variable LD_PRELOAD is dangerous: the dynamic loader`}},
		{"variable BASH_FUNC_", edited(addAfter(18, "      variables:", "        BASH_FUNC_echo: {value: x}")), []string{`20:9|variable BASH_FUNC_echo is dangerous: bash imports it`}},
		{"variable GIT_", edited(addAfter(18, "      variables:", "        GIT_SSH_COMMAND: {value: ssh}")), []string{`20:9|variable GIT_SSH_COMMAND is dangerous: git reads`}},
		{"variable NODE_OPTIONS", edited(addAfter(18, "      variables:", "        NODE_OPTIONS: {value: --max-old-space-size=4096}")), []string{`20:9|variable NODE_OPTIONS is dangerous: runtimes read *_OPTIONS`}},
		{"variable JAVA_TOOL_OPTIONS", edited(addAfter(18, "      variables:", "        JAVA_TOOL_OPTIONS: {value: x}")), []string{`20:9|variable JAVA_TOOL_OPTIONS is dangerous`}},
		{"variable PYTHONSTARTUP", edited(addAfter(18, "      variables:", "        PYTHONSTARTUP: {value: x}")), []string{`20:9|variable PYTHONSTARTUP is dangerous: python`}},
		{"variable lower-case proxy", edited(addAfter(18, "      variables:", "        https_proxy: {value: x}")), []string{`20:9|variable https_proxy is dangerous`}},
		{"variable IFS", edited(addAfter(18, "      variables:", "        IFS: {value: x}")), []string{`20:9|variable IFS is dangerous`}},
		{"variable PATH reserved", edited(addAfter(18, "      variables:", "        PATH: {value: /bin, dangerous: true}")), []string{`20:9|variable PATH cannot be admitted: writ sets it from the runner host's configuration`}},
		{"variable HOME reserved", edited(addAfter(18, "      variables:", "        HOME: {value: /root}")), []string{`20:9|variable HOME cannot be admitted`}},
		{"variable CI_ reserved", edited(addAfter(18, "      variables:", "        CI_COMMIT_TAG: {value: v1}")), []string{`20:9|variable CI_COMMIT_TAG cannot be admitted: writ sets it from verified data`}},
		{"variable WRIT_ reserved", edited(addAfter(18, "      variables:", "        WRIT_ENTRY: {value: x}")), []string{`20:9|variable WRIT_ENTRY cannot be admitted: writ sets WRIT_ variables`}},
		{"variable GITLAB_ reserved", edited(addAfter(18, "      variables:", "        GITLAB_USER_LOGIN: {value: x}")), []string{`20:9|variable GITLAB_USER_LOGIN cannot be admitted`}},
		{"variable ordinary name", edited(addAfter(18, "      variables:", "        DEPLOY_PATH: {value: x}", "        RELEASE_OPTIONS_FILE: {value: y}")), nil},
		{"variable null", edited(addAfter(18, "      variables:", "        X:")), []string{`20:9|variable X has no value`}},
		{"variables list", edited(addAfter(18, "      variables: [X]")), []string{`19:18|variables must be a mapping`}},
		{"pattern unanchored start", edited(addAfter(18, "      variables:", "        X: {pattern: 'v[0-9]+$'}")), []string{`20:22|must begin with ^`}},
		{"pattern unanchored end", edited(addAfter(18, "      variables:", "        X: {pattern: '^v[0-9]+'}")), []string{`20:22|must end with an unescaped $`}},
		{"pattern escaped end", edited(addAfter(18, "      variables:", `        X: {pattern: '^v[0-9]+\$'}`)), []string{`20:22|must end with an unescaped $`}},
		{"pattern alternation", edited(addAfter(18, "      variables:", "        X: {pattern: '^a|b$'}")), []string{`20:22|does not match whole values only`}},
		{"pattern multi-line flag", edited(addAfter(18, "      variables:", "        X: {pattern: '(?m)^a$'}")), []string{`20:22|must begin with ^`}},
		{"pattern multi-line flag inside", edited(addAfter(18, "      variables:", "        X: {pattern: '^(?m)a$'}")), []string{`20:22|does not match whole values only`}},
		{"pattern does not compile", edited(addAfter(18, "      variables:", "        X: {pattern: '^(a$'}")), []string{`20:22|does not compile`}},
		{"pattern empty", edited(addAfter(18, "      variables:", `        X: {pattern: ""}`)), []string{`20:22|pattern of X is empty`}},

		// Signer sets.
		{"signer set without keys", edited(setLine(6, "  web-team: {}"), delLine(7), delLine(8)), []string{`6:3|signer set "web-team" has no keys`}},
		{"signer set null", edited(setLine(6, "  web-team:"), delLine(7), delLine(8)), []string{`6:3|signer set "web-team" has no keys`}},
		{"signer set empty ssh", edited(setLine(7, "    ssh: []"), delLine(8)), []string{`7:10|ssh is empty`}},
		{"signer set name invalid", edited(setLine(6, "  web team:"), setLine(21, "      signers: [web team]")), []string{`6:3|signer set name "web team"`}},
		{"signer set unknown key", edited(addAfter(6, "    x509: []")), []string{`7:5|unknown key "x509" in signer set "web-team": use one of openpgp, ssh`}},
		{"ssh garbage", edited(setLine(8, "      - bob@example.com ssh-ed25519 notbase64")), []string{`8:9|ssh key key is not valid base64`}},
		{"ssh missing key", edited(setLine(8, "      - bob@example.com")), []string{`8:9|ssh key principals without a key`}},
		{"ssh cert-authority", edited(setLine(8, "      - bob@example.com cert-authority "+strings.TrimPrefix(bobSSH, "bob@example.com "))), []string{`8:9|cert-authority`}},
		{"ssh wrong namespace", edited(setLine(8, `      - bob@example.com namespaces="file" `+strings.TrimPrefix(bobSSH, "bob@example.com "))), []string{`8:9|does not include git`}},
		{"ssh negated principal", edited(setLine(8, "      - '!bob@example.com "+strings.TrimPrefix(bobSSH, "bob@example.com ")+"'")), []string{`8:9|principal "!bob@example.com" is a negation: ssh-keygen reads principals as a pattern list`}},
		{"ssh wildcard principal", edited(setLine(8, "      - '*@example.com "+strings.TrimPrefix(bobSSH, "bob@example.com ")+"'")), []string{`8:9|principal "*@example.com" holds a pattern character`}},
		{"ssh local validity time", edited(setLine(8, `      - bob@example.com valid-after="20250301" `+strings.TrimPrefix(bobSSH, "bob@example.com "))), []string{`8:9|ssh key valid-after="20250301" has no time zone`}},
		{"ssh type mismatch", edited(setLine(8, "      - bob@example.com ssh-rsa "+strings.Fields(bobSSH)[2])), []string{`8:9|says ssh-rsa but the key is ssh-ed25519`}},
		{"ssh line break", edited(setLine(8, `      - "`+bobSSH+`\n`+bobSSH+`"`)), []string{`8:9|line break`}},
		{"ssh comment line", edited(setLine(8, `      - "# nobody"`)), []string{`8:9|empty or a comment`}},
		{"ssh duplicate key", edited(addAfter(8, "      - alice@example.com "+strings.TrimPrefix(bobSSH, "bob@example.com "))), []string{`9:9|is listed twice in this set (first at line 8)`}},
		{"ssh number", edited(setLine(8, "      - 42")), []string{`8:9|allowed_signers line: 42 is read as a number`}},
		{"openpgp key without loader", edited(addAfter(6, "    openpgp:", "      - fingerprint: 40C8C819C0DCCD991D8E05859F55F7974B5C971B", "        key: keys/alice.asc")),
			[]string{`9:14|key file "keys/alice.asc" cannot be read (no file loader was given)`}},
		{"openpgp missing fingerprint", edited(addAfter(6, "    openpgp:", "      - key: keys/alice.asc")),
			[]string{`8:9|openpgp key: missing required key "fingerprint"`, `8:14|key file "keys/alice.asc" cannot be read`}},
		{"openpgp bad fingerprint", edited(addAfter(6, "    openpgp:", "      - fingerprint: 40C8 C819 C0DC CD99 1D8E 0585 9F55 F797 4B5C 971B", "        key: keys/alice.asc")),
			[]string{`8:22|write the full primary key fingerprint`, `9:14|cannot be read`}},
		{"openpgp short fingerprint", edited(addAfter(6, "    openpgp:", "      - fingerprint: 4B5C971B", "        key: keys/alice.asc")),
			[]string{`8:22|write the full primary key fingerprint`, `9:14|cannot be read`}},
		{"openpgp absolute path", edited(addAfter(6, "    openpgp:", "      - fingerprint: 40C8C819C0DCCD991D8E05859F55F7974B5C971B", "        key: /etc/alice.asc")),
			[]string{`9:14|key file "/etc/alice.asc" is absolute`}},
		{"openpgp escaping path", edited(addAfter(6, "    openpgp:", "      - fingerprint: 40C8C819C0DCCD991D8E05859F55F7974B5C971B", "        key: keys/../../alice.asc")),
			[]string{`9:14|leaves the repository`}},
		{"openpgp parent path", edited(addAfter(6, "    openpgp:", "      - fingerprint: 40C8C819C0DCCD991D8E05859F55F7974B5C971B", "        key: ../alice.asc")),
			[]string{`9:14|leaves the repository`}},
		{"openpgp unclean path", edited(addAfter(6, "    openpgp:", "      - fingerprint: 40C8C819C0DCCD991D8E05859F55F7974B5C971B", "        key: ./keys//alice.asc")),
			[]string{`9:14|is not a clean path: write it as keys/alice.asc`}},
		{"openpgp item not a mapping", edited(addAfter(6, "    openpgp: [keys/alice.asc]")), []string{`7:15|an openpgp key must be a mapping`}},

		// Bounds.
		{"too many match combinations", edited(setLine(14, "      environments: ["+numbered("e", 1001)+"]"), setLine(15, "      refs: ["+numbered("refs/heads/r", 1000)+"]")),
			[]string{"10:3|more than 1000000 (environment, ref) combinations"}},
		{"script too many lines", edited(setLine(18, `        - "`+strings.Repeat(`x\n`, MaxScriptLines)+`"`)), []string{"18:9|script has 10001 lines; the limit is 10000"}},
		{"string too long", edited(setLine(18, "        - "+strings.Repeat("x", MaxStringBytes+1))), []string{"18:11|script item is 65537 bytes long; the limit is 65536"}},
	}
}

// numbered returns "p0, p1, …" with n items.
func numbered(p string, n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = p + strconv.Itoa(i)
	}
	return strings.Join(s, ", ")
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for _, c := range negativeCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a, err := Parse(FileName, []byte(c.doc), nil)
			if c.want == nil {
				if err != nil {
					t.Fatalf("want success, got:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want errors %q", c.want)
			}
			if a != nil {
				t.Fatal("Parse returned an allowlist together with errors")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList", err)
			}
			checkErrors(t, list, c.want)
		})
	}
}

// checkErrors asserts that list holds exactly the wanted errors, in order.
func checkErrors(t *testing.T, list ErrorList, want []string) {
	t.Helper()
	ok := len(list) == len(want)
	for i := 0; ok && i < len(want); i++ {
		pos, msg, _ := strings.Cut(want[i], "|")
		e := list[i]
		if fmt.Sprintf("%d:%d", e.Line, e.Column) != pos || !strings.Contains(e.Msg, msg) || e.File != FileName {
			ok = false
		}
	}
	if !ok {
		var got []string
		for _, e := range list {
			got = append(got, fmt.Sprintf("%d:%d|%s", e.Line, e.Column, e.Msg))
		}
		t.Fatalf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
