package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// passthroughScript is a naive custom executor, as found in GitLab's
// documentation examples: it starts the job's image and services and runs
// every script the runner hands it, with the runner's own environment. It
// admits everything, so every attack in the catalog must succeed against
// it; that is the suite's mutation check.
//
// Images are emulated: "starting" image NAME runs the executable
// <images>/<NAME with / : @ as _>/entrypoint (see World.AddImage), the way
// an LXD or VM executor boots the image GitLab names.
const passthroughScript = `#!/bin/bash
# e2e pass-through custom executor: <stage> [script runner-stage]
set -u
echo "$1 ${3:-}" >> %[1]q
images=%[2]q
start_image() {
	local dir="$images/$(printf '%%s' "$1" | tr '/:@' '___')"
	if [ ! -x "$dir/entrypoint" ]; then
		echo "pass-through executor: image $1 not found" >&2
		exit "$SYSTEM_FAILURE_EXIT_CODE"
	fi
	echo "pass-through executor: starting $2 $1"
	"$dir/entrypoint"
}
case "$1" in
config)
	printf '{"driver":{"name":"e2e-passthrough","version":"1"}}\n'
	;;
prepare)
	echo "pass-through executor: preparing"
	if [ -n "${CUSTOM_ENV_CI_JOB_IMAGE:-}" ]; then
		start_image "$CUSTOM_ENV_CI_JOB_IMAGE" image
	fi
	for svc in $(printf '%%s' "${CUSTOM_ENV_CI_JOB_SERVICES:-}" | grep -o '"name":"[^"]*"' | cut -d'"' -f4); do
		start_image "$svc" service
	done
	;;
run)
	bash "$2"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "$rc" > "$BUILD_EXIT_CODE_FILE"
		exit "$BUILD_FAILURE_EXIT_CODE"
	fi
	;;
cleanup)
	;;
*)
	echo "pass-through executor: unknown stage $1" >&2
	exit "${SYSTEM_FAILURE_EXIT_CODE:-2}"
	;;
esac
`

// Passthrough writes the pass-through executor into dir. Every call it gets
// is appended to dir/calls.log as "<stage> [runner-stage]"; its images live
// in dir/images (see AddImage).
func Passthrough(dir string) (Executor, error) {
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return Executor{}, err
	}
	path := filepath.Join(dir, "passthrough.sh")
	logPath := filepath.Join(dir, "calls.log")
	script := fmt.Sprintf(passthroughScript, logPath, filepath.Join(dir, "images"))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return Executor{}, err
	}
	return Executor{
		ConfigExec: path, ConfigArgs: []string{"config"},
		PrepareExec: path, PrepareArgs: []string{"prepare"},
		RunExec: path, RunArgs: []string{"run"},
		CleanupExec: path, CleanupArgs: []string{"cleanup"},
	}, nil
}

// PassthroughCalls returns the calls the pass-through executor in dir got.
func PassthroughCalls(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "calls.log"))
	if err != nil {
		return nil
	}
	var calls []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		calls = append(calls, strings.TrimSpace(line))
	}
	return calls
}

// AddImage makes image name available to the pass-through executor in dir:
// starting it runs entrypoint (a bash script body).
func AddImage(dir, name, entrypoint string) error {
	d := filepath.Join(dir, "images", strings.NewReplacer("/", "_", ":", "_", "@", "_").Replace(name))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, "entrypoint"), []byte("#!/bin/bash\n"+entrypoint+"\n"), 0o755)
}
