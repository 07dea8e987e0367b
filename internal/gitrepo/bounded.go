package gitrepo

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// maxAdvertisementBytes bounds a server's list of refs (the smart-HTTP
// info/refs response). go-git reads the whole list into memory before writ
// can look at one ref, so a hostile server could otherwise make writ hold
// as much as it cares to send; a real repository's list is far smaller.
const maxAdvertisementBytes = 32 << 20

// ErrAdvertisementTooLarge is wrapped by a fetch whose server sent a list
// of refs over maxAdvertisementBytes.
var ErrAdvertisementTooLarge = errors.New("the server's list of refs is too large")

// transportClient returns the git client for ep. Over HTTP(S) its
// responses are bounded (the pack itself is bounded by the pack guard).
func transportClient(ep *transport.Endpoint) (transport.Transport, error) {
	switch ep.Protocol {
	case "http", "https":
		return githttp.NewClient(&http.Client{Transport: boundedTransport{http.DefaultTransport}}), nil
	}
	return client.NewClient(ep)
}

// boundedTransport caps the body of every info/refs response.
type boundedTransport struct{ base http.RoundTripper }

func (t boundedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/info/refs") {
		return resp, err
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: maxAdvertisementBytes}
	return resp, nil
}

// cappedBody fails a read that would go past its limit.
type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.err()
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, b.err()
	}
	return n, err
}

func (b *cappedBody) err() error {
	return fmt.Errorf("%w: more than %d bytes", ErrAdvertisementTooLarge, maxAdvertisementBytes)
}
