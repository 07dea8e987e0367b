package companion

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// linkHeader is where limitTransport keeps GitLab's Link header: client-go
// parses Link itself and panics on some malformed ones, so the header is
// moved out of its reach and read here instead.
const linkHeader = "X-Writ-Link"

// maxPages bounds any list writ reads, so a server that always names a
// next page cannot keep writ reading forever.
const maxPages = 1000

// eachPage reads a paged GitLab list: it calls fetch with page 1, then with
// each next page GitLab names — in X-Next-Page or, failing that, the Link
// header's rel="next" — until it names none. An empty page does not end
// the list: GitLab filters some lists (notes) after paging, so a page can
// be empty while later pages hold items. fetch returns false to stop early.
func eachPage(ctx context.Context, what string, fetch func(page int64) (resp *gitlab.Response, more bool, err error)) error {
	page := int64(1)
	for n := 0; ; n++ {
		if n >= maxPages {
			return fmt.Errorf("%s: more than %d pages", what, maxPages)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		resp, more, err := fetch(page)
		if err != nil || !more {
			return err
		}
		next, err := nextPage(resp)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if next == 0 {
			return nil
		}
		if next <= page {
			return fmt.Errorf("%s: GitLab's next page (%d) after page %d goes backwards", what, next, page)
		}
		page = next
	}
}

// nextPage is the page GitLab names as the next one, 0 when none.
func nextPage(resp *gitlab.Response) (int64, error) {
	if resp == nil || resp.Response == nil {
		return 0, nil
	}
	if resp.NextPage > 0 {
		return resp.NextPage, nil
	}
	return nextFromLink(resp.Header.Get(linkHeader))
}

// nextFromLink reads the page number of a Link header's rel="next" target
// (RFC 8288; GitLab's offset pagination puts page=N in it). A next link
// without a page number is keyset pagination, which writ does not request.
func nextFromLink(h string) (int64, error) {
	if h == "" {
		return 0, nil
	}
	for _, part := range strings.Split(h, ",") {
		target, params, ok := strings.Cut(part, ";")
		target = strings.TrimSpace(target)
		if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			continue
		}
		next := false
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "rel") && strings.Trim(v, `"`) == "next" {
				next = true
			}
		}
		if !next {
			continue
		}
		u, err := url.Parse(target[1 : len(target)-1])
		if err != nil {
			return 0, fmt.Errorf("GitLab's Link header has an unreadable next link")
		}
		n, err := strconv.ParseInt(u.Query().Get("page"), 10, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("GitLab's next link has no page number (keyset pagination?); writ follows offset pages only")
		}
		return n, nil
	}
	return 0, nil
}
