package etcdtest

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EnableAuth turns etcd's authentication on, with a root user (a client
// certificate made by ClientCert("root") acts as it) and, for each user
// of prefixes, a role of the same name with read and write on that key
// prefix only. etcd takes a client certificate's common name for the
// user, so ClientCert(user) then acts as that user.
func (c *Cluster) EnableAuth(prefixes map[string]string) error {
	tc, err := c.ClientTLS("root")
	if err != nil {
		return err
	}
	admin, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, TLS: tc, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := admin.RoleAdd(ctx, "root"); return err },
		// The password is never used: the certificate names the user.
		func() error { _, err := admin.UserAdd(ctx, "root", "unused"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
	}
	for user, prefix := range prefixes {
		steps = append(steps,
			func() error { _, err := admin.RoleAdd(ctx, user); return err },
			func() error {
				_, err := admin.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
				return err
			},
			func() error { _, err := admin.UserAdd(ctx, user, "unused"); return err },
			func() error { _, err := admin.UserGrantRole(ctx, user, user); return err },
		)
	}
	steps = append(steps, func() error { _, err := admin.AuthEnable(ctx); return err })
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}
