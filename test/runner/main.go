// Command gitlab-runner is the real GitLab Runner's CLI reduced to what writ's
// end-to-end suite needs: `run-single` with the custom executor, the shell
// script writers, the GitLab API client (with the job router wiring of the
// runner's own main) and the artifacts and cache helper commands that job
// scripts call. Every package comes unchanged from
// gitlab.com/gitlab-org/gitlab-runner. Left out: every other executor (shell
// embeds a step-runner server; docker, kubernetes, instance and the
// autoscalers need fleeting or step-runner, which the module proxy does not
// serve), the other helper subcommands and the runner wrapper.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli"

	"gitlab.com/gitlab-org/gitlab-runner/commands"
	"gitlab.com/gitlab-org/gitlab-runner/commands/helpers"
	"gitlab.com/gitlab-org/gitlab-runner/common"
	"gitlab.com/gitlab-org/gitlab-runner/executors"
	"gitlab.com/gitlab-org/gitlab-runner/executors/custom"
	"gitlab.com/gitlab-org/gitlab-runner/helpers/homedir"
	"gitlab.com/gitlab-org/gitlab-runner/log"
	"gitlab.com/gitlab-org/gitlab-runner/network"
	"gitlab.com/gitlab-org/gitlab-runner/router"

	_ "gitlab.com/gitlab-org/gitlab-runner/shells"
)

func main() {
	defer func() {
		if r := recover(); r != nil {
			// the runner panics with a logrus entry to force exit
			if _, ok := r.(*logrus.Entry); ok {
				os.Exit(1)
			}
			panic(r)
		}
	}()

	providers := newExecutorProviders()
	for name, provider := range providers.All() {
		if err := common.ValidateExecutorProvider(provider); err != nil {
			panic(fmt.Sprintf("Executor %s cannot be registered: %v", name, err))
		}
	}

	client, shutdown := newClient(providers)
	defer shutdown()

	app := cli.NewApp()
	app.Name = filepath.Base(os.Args[0])
	app.Usage = "the GitLab Runner, built for writ's end-to-end tests"
	app.Version = common.AppVersion.ShortLine()
	cli.VersionPrinter = common.AppVersion.Printer
	app.Commands = []cli.Command{
		commands.NewRunSingleCommand(client, providers),
		commands.NewVerifyCommand(client),
		commands.NewListCommand(),
		// The job script runs these as "gitlab-runner <command>" for
		// artifacts and the local cache.
		helpers.NewArtifactsDownloaderCommand(),
		helpers.NewArtifactsUploaderCommand(),
		helpers.NewCacheArchiverCommand(),
		helpers.NewCacheExtractorCommand(),
		helpers.NewCacheInitCommand(),
	}
	app.CommandNotFound = func(_ *cli.Context, command string) {
		logrus.Fatalln("Command", command, "not found in writ's test build of gitlab-runner.")
	}

	// The runner's helpers/cli package would also pull in the step-runner
	// subcommand; its FixHOME is this one line.
	app.Before = func(*cli.Context) error { return homedir.New().Fix() }
	log.ConfigureLogging(app)

	if err := app.Run(os.Args); err != nil {
		logrus.Fatal(err)
	}
}

// newClient wires the GitLab API client exactly as the runner's own main does.
func newClient(providers executors.Providers) (common.Network, func()) {
	certDir := commands.GetDefaultCertificateDirectory()
	mainClient := network.NewGitLabClient(
		network.WithAPIRequestsCollector(network.NewAPIRequestsCollector()),
		network.WithCertificateDirectory(certDir),
		network.WithExecutorProviderFunc(providers.GetByName),
	)
	rc := router.NewClient(mainClient, certDir, common.AppVersion.UserAgent())
	return rc, rc.Shutdown
}

func newExecutorProviders() *executors.ProviderRegistry {
	return executors.NewProviderRegistry(map[string]common.ExecutorProvider{
		"custom": custom.NewProvider("gitlab-runner"),
	})
}
