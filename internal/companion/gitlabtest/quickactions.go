package gitlabtest

import (
	"regexp"
	"strings"
)

// QuickAction is a quick action GitLab ran from a note or description.
type QuickAction struct {
	// By is the user whose note or description carried it.
	By      User
	Command string
	Arg     string
}

// quickActionNames are commands GitLab knows on merge requests
// (doc/user/project/quick_actions.md). The fake recognises these; it acts
// on close, reopen, merge and title, and records every one.
var quickActionNames = []string{
	"approve", "assign", "assign_reviewer", "award", "clone", "close", "copy_metadata",
	"draft", "due", "estimate", "label", "lock", "merge", "milestone", "ready", "rebase",
	"relabel", "remove_due_date", "reopen", "request_review", "shrug", "spend", "submit_review",
	"subscribe", "tableflip", "target_branch", "title", "todo", "unapprove", "unassign",
	"unassign_reviewer", "unlabel", "unlock", "unsubscribe",
}

// quickActionRE follows Gitlab::QuickActions::Extractor#commands_regex
// (lib/gitlab/quick_actions/extractor.rb): a command is a line that starts
// with "/" and a known name, outside a ``` code block, an HTML block and a
// >>> quote block. GitLab's regex has one more protected form (text between
// a backtick at the end of one line and one at the end of a later line);
// the fake leaves it out, so it runs at least every command GitLab runs.
var quickActionRE = regexp.MustCompile(`(?ms)` +
	"(?P<code>^```.+?\\n```$)" +
	`|(?P<html>^<[^>]+?>\n.+?\n</[^>]+?>$)` +
	`|(?P<quote>^>>>.+?\n>>>$)` +
	`|(?:^/(?P<cmd>(?i:` + strings.Join(quickActionNames, "|") + `))(?:[ ](?P<arg>[^\n]*))?(?:\s*\n|$))`)

// extractQuickActions removes the commands from body as GitLab does before
// it stores a note or description: carriage returns are deleted, command
// lines removed and trailing whitespace stripped
// (Extractor#perform_regex). It returns the stored text and the commands.
func extractQuickActions(body string) (string, []QuickAction) {
	body = strings.ReplaceAll(body, "\r", "")
	var cmds []QuickAction
	cmdIdx := quickActionRE.SubexpIndex("cmd")
	argIdx := quickActionRE.SubexpIndex("arg")
	var b strings.Builder
	last := 0
	for _, m := range quickActionRE.FindAllStringSubmatchIndex(body, -1) {
		if m[2*cmdIdx] < 0 {
			continue // a protected block: kept as is
		}
		b.WriteString(body[last:m[0]])
		last = m[1]
		qa := QuickAction{Command: strings.ToLower(body[m[2*cmdIdx]:m[2*cmdIdx+1]])}
		if m[2*argIdx] >= 0 {
			qa.Arg = strings.TrimSpace(body[m[2*argIdx]:m[2*argIdx+1]])
		}
		cmds = append(cmds, qa)
	}
	b.WriteString(body[last:])
	return strings.TrimRight(b.String(), " \t\n\v\f\r"), cmds
}

// applyQuickActions records cmds and acts on the merge request.
func (s *Server) applyQuickActions(mr *MergeRequest, by User, cmds []QuickAction) {
	for _, q := range cmds {
		q.By = by
		s.quickActions = append(s.quickActions, q)
		switch q.Command {
		case "close":
			mr.State = "closed"
		case "reopen":
			mr.State = "opened"
		case "merge":
			mr.State = "merged"
		case "title":
			if q.Arg != "" {
				mr.Title = q.Arg
			}
		}
	}
}

// QuickActions returns the quick actions GitLab ran so far.
func (s *Server) QuickActions() []QuickAction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]QuickAction(nil), s.quickActions...)
}

// QuickActionsIn returns the quick actions GitLab would run from body, and
// the text it would store.
func QuickActionsIn(body string) (stored string, cmds []QuickAction) {
	return extractQuickActions(body)
}
