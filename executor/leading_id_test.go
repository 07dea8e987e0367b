package executor

import (
	"strings"
	"testing"
)

func TestLeadingJobID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"id":4242,"token":"x"`:      "4242",
		` { "id" : 7 , `:              "7",
		`{"id":4242`:                  "4242",
		`{"token":"x","id":4242}`:     "", // not the first key
		`{"id":"4242"}`:               "", // a string, not the runner's number
		`{"id":-1}`:                   "",
		`{"id":0}`:                    "",
		`{"id":4.2e3}`:                "",
		`{"id":12345678901234567890}`: "", // more than 19 digits
		`{"ID":4242}`:                 "", // exact key only
		`["id",4242]`:                 "",
		`{"id":{"a":1}}`:              "",
		`{"id"` + strings.Repeat(" ", 300) + `:1}`: "", // beyond the bound
		``: "",
	} {
		if got := leadingJobID(strings.NewReader(in)); got != want {
			t.Errorf("leadingJobID(%.40q) = %q, want %q", in, got, want)
		}
	}
}

// TestOversizedPayloadNamesItsJob: a payload over job.max_payload_bytes is
// refused unread, but when it starts as the runner writes one ({"id":…),
// the refusal and its audit record name the job.
func TestOversizedPayloadNamesItsJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	good := string(e.payload(801, e.head))
	rest := strings.Replace(good, `"id":801,`, ``, 1)
	if rest == good {
		t.Fatalf("payload has no \"id\":801, to move: %.200s", good)
	}
	big := `{"id":801,"token":"` + strings.Repeat("A", 5<<20) + `","x":` + strings.TrimPrefix(strings.Replace(rest, `"token":`, `"y":`, 1), "{")
	j := e.newJob([]byte(big))
	out, code := j.stage("prepare")
	if code != 1 {
		t.Fatalf("prepare %d\n%s", code, out)
	}
	mustContain(t, out, "Failed check: payload", "Job:        801\n")
	if got := eventsFor(e.auditRecords(), "801"); len(got) != 1 || got[0] != EventRefuse {
		t.Errorf("audit events of job 801: %q, want one refuse", got)
	}
	j.assertNothingRan()
}

func FuzzLeadingJobID(f *testing.F) {
	for _, s := range []string{`{"id":4242,"token":"x"`, `{"id":"1"}`, `{"id":1e3}`, `{`, `{"id":01}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id := leadingJobID(strings.NewReader(s))
		if id != "" && !jobIDPattern.MatchString(id) {
			t.Fatalf("leadingJobID(%q) = %q, not a job id", s, id)
		}
	})
}
