package e2e

import (
	"strings"

	"gitlab.com/writ-ci/writ/internal/audit"
)

// judgeUploadRefused judges an UploadRefused run: writ admitted the job
// and ran it, then refused the upload and recorded why; the job failed.
// That nothing reached GitLab is the scenario's WritCheck.
func judgeUploadRefused(exp Expectation, mine []audit.Record, o Outcome, problems []string) (string, []string) {
	bad := func(s string) { problems = append(problems, s) }
	if o.State != "failed" {
		bad("want a failed job, got " + o.State)
	}
	if _, ok := hasEvent(mine, "admit"); !ok {
		bad("no admit audit record: the job was to be admitted and its upload refused")
	}
	r, ok := hasEvent(mine, "upload")
	switch {
	case !ok:
		bad("no upload audit record")
	case r.Fields["status"] != "refused":
		bad("the upload audit record's status is not refused: " + r.Reason)
	case !strings.Contains(r.Reason, exp.Detail):
		bad("the upload audit record's reason lacks " + exp.Detail + ": " + r.Reason)
	}
	return "admitted, upload refused: " + clipText(r.Reason, 150), problems
}
