// Command step-runner is the suite's stand-in for GitLab's step-runner, as
// installed on a runner host so that jobs using the `run:` keyword work with
// a custom executor. The runner turns such a job into the script
// `step-runner ci` with the steps, as JSON, in the STEPS variable; this
// stand-in runs each step's `script` with bash, as the real one does, and
// refuses steps it cannot run. It exists so the suite can show that a naive
// executor runs `run:` steps a hostile GitLab injects.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
)

type step struct {
	Name   string `json:"name"`
	Script string `json:"script"`
	Step   string `json:"step"`
}

func main() {
	if len(os.Args) != 2 || os.Args[1] != "ci" {
		fmt.Fprintln(os.Stderr, "usage: step-runner ci (steps in $STEPS)")
		os.Exit(2)
	}
	var steps []step
	if err := json.Unmarshal([]byte(os.Getenv("STEPS")), &steps); err != nil {
		fmt.Fprintln(os.Stderr, "step-runner: STEPS is not a JSON list of steps:", err)
		os.Exit(2)
	}
	for _, s := range steps {
		if s.Script == "" {
			fmt.Fprintf(os.Stderr, "step-runner: step %q: only script steps are supported here\n", s.Name)
			os.Exit(2)
		}
		fmt.Printf("Running step %q\n", s.Name)
		cmd := exec.Command("bash", "-c", s.Script)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "step-runner: step %q: %v\n", s.Name, err)
			os.Exit(1)
		}
	}
}
