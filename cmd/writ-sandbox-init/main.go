// Command writ-sandbox-init is the first process of each job's sandbox:
// writ starts it in the job's new namespaces, and it builds the job's root,
// drops privileges, starts the job's script and reaps until it exits
// (package sandbox). It is writ's own init, in a binary of its own so that
// starting it costs a few milliseconds rather than writ's whole start-up;
// without it beside writ, writ runs itself as the init.
package main

import (
	"fmt"
	"os"

	"gitlab.com/writ-ci/writ/sandbox"
)

func main() {
	sandbox.Main()
	fmt.Fprintln(os.Stderr, "writ-sandbox-init: only writ's sandbox runs this program")
	os.Exit(2)
}
