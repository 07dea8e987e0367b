package gitrepo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// sshGitServer is a minimal SSH server on 127.0.0.1 that runs
// git-upload-pack for clients presenting the authorized key.
func sshGitServer(t *testing.T, authorized ssh.PublicKey) (addr string, hostKey ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), authorized.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveSSH(conn, cfg)
		}
	}()
	return ln.Addr().String(), signer.PublicKey()
}

func serveSSH(conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range creqs {
				if req.Type != "exec" || len(req.Payload) < 4 {
					req.Reply(false, nil)
					continue
				}
				cmdline := string(req.Payload[4:])
				name, arg, _ := strings.Cut(cmdline, " ")
				if name != "git-upload-pack" {
					req.Reply(false, nil)
					continue
				}
				req.Reply(true, nil)
				cmd := exec.Command("git-upload-pack", strings.Trim(arg, "'"))
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME=/nonexistent"}
				cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
				status := uint32(0)
				if err := cmd.Run(); err != nil {
					status = 1
				}
				var b [4]byte
				binary.BigEndian.PutUint32(b[:], status)
				ch.SendRequest("exit-status", false, b[:])
				return
			}
		}()
	}
}

func writeKnownHosts(t *testing.T, addr string, key ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFetchSSH(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 2)
	client := testkeys.SSHKey(t, "ci@example.com")
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(client.PublicLine))
	if err != nil {
		t.Fatal(err)
	}
	addr, hostKey := sshGitServer(t, pub)
	url := "ssh://git@" + addr + r.Path + "/.git"
	auth := Auth{Kind: AuthSSHKey, SSHKeyFile: client.PrivatePath, KnownHostsFile: writeKnownHosts(t, addr, hostKey)}
	testFetchMain(t, url, r, hs, auth)

	// A server whose host key is not the one in known_hosts is refused:
	// there is no trust-on-first-use and no ignoring host keys.
	_, otherHostPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := ssh.NewSignerFromKey(otherHostPriv)
	wrongHost := Auth{Kind: AuthSSHKey, SSHKeyFile: client.PrivatePath, KnownHostsFile: writeKnownHosts(t, addr, otherSigner.PublicKey())}
	m := mustMirror(t, url, wrongHost)
	err = m.Fetch(ctxTimeout(t, 30*time.Second), "+refs/heads/main:refs/writ/heads/main")
	if err == nil {
		t.Fatal("fetch from a host with an unknown key succeeded")
	}
	t.Logf("wrong host key refused: %v", err)

	// A host missing from known_hosts is refused too.
	unlisted := Auth{Kind: AuthSSHKey, SSHKeyFile: client.PrivatePath, KnownHostsFile: writeKnownHosts(t, "127.0.0.2:22", hostKey)}
	m = mustMirror(t, url, unlisted)
	if err := m.Fetch(ctxTimeout(t, 30*time.Second), "+refs/heads/main:refs/writ/heads/main"); err == nil {
		t.Fatal("fetch from a host absent from known_hosts succeeded")
	}

	// A client key the server does not authorize fails.
	stranger := testkeys.SSHKey(t, "stranger@example.com")
	m = mustMirror(t, url, Auth{Kind: AuthSSHKey, SSHKeyFile: stranger.PrivatePath, KnownHostsFile: auth.KnownHostsFile})
	if err := m.Fetch(ctxTimeout(t, 30*time.Second), "+refs/heads/main:refs/writ/heads/main"); err == nil {
		t.Fatal("fetch with an unauthorized key succeeded")
	}

	// A missing known_hosts file is an error, not a fallback to ~/.ssh.
	m = mustMirror(t, url, Auth{Kind: AuthSSHKey, SSHKeyFile: client.PrivatePath, KnownHostsFile: filepath.Join(t.TempDir(), "absent")})
	err = m.Fetch(context.Background(), "+refs/heads/main:refs/writ/heads/main")
	wantErr(t, err, "known_hosts")
}

// An SSH server that accepts the connection and never says a word (not
// even its version) costs a fetch and a ref check their deadline, no
// more: go-git runs the SSH handshake without the fetch's context.
func TestFetchSSHSilentServer(t *testing.T) {
	t.Parallel()
	client := testkeys.SSHKey(t, "ci@example.com")
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(client.PublicLine))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var held []net.Conn // accepted and silent until the test ends
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := ln.Addr().String()
	m := mustMirror(t, "ssh://git@"+addr+"/x.git", Auth{Kind: AuthSSHKey, SSHKeyFile: client.PrivatePath, KnownHostsFile: writeKnownHosts(t, addr, pub)})
	for _, op := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"fetch", func(ctx context.Context) error { return m.Fetch(ctx, mainSpec) }},
		{"ref check", func(ctx context.Context) error { _, err := m.RemoteRef(ctx, "refs/heads/main"); return err }},
	} {
		done := make(chan error, 1)
		go func() { done <- op.run(ctxTimeout(t, 500*time.Millisecond)) }()
		var err error
	wait:
		for {
			select {
			case c := <-accepted:
				held = append(held, c)
			case err = <-done:
				break wait
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: still waiting for a silent SSH server 30 s after a 500 ms deadline", op.name)
			}
		}
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer in time") {
			t.Fatalf("%s: %v, want the deadline, worded as the remote not answering", op.name, err)
		}
	}
}
