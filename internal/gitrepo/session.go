package gitrepo

import (
	"context"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// openSession opens an upload-pack session with the remote within ctx.
//
// go-git's SSH transport dials and runs the SSH handshake inside
// NewUploadPackSession, without a context: the dial timeout it takes
// (sshAuth) covers the TCP connection only, so a server that accepts and
// then says nothing would hold the fetch, and the stage, past its
// deadline. The session is therefore opened aside; when ctx ends first it
// is abandoned, and closed if it ever opens. (HTTP opens nothing here: its
// requests carry ctx.)
func openSession(ctx context.Context, cli transport.Transport, ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	type opened struct {
		sess transport.UploadPackSession
		err  error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := cli.NewUploadPackSession(ep, auth)
		ch <- opened{s, err}
	}()
	select {
	case o := <-ch:
		return o.sess, o.err
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.err == nil {
				_ = o.sess.Close()
			}
		}()
		return nil, ctx.Err()
	}
}
