// Package schema is writ's stand-in for step-runner's step schema. A Step
// keeps the fields the runner reads and every other field of the payload
// verbatim, so a `run:` job round-trips through the runner byte-for-byte in
// meaning (the runner re-encodes it into the STEPS variable for executors
// without native steps, such as the custom executor).
package schema

import (
	"encoding/json"
	"maps"
)

// StepInputs are a step's inputs.
type StepInputs map[string]any

// Step is one step of a `run:` list.
type Step struct {
	Name   *string    `json:"name,omitempty" yaml:"name,omitempty"`
	Step   string     `json:"step,omitempty" yaml:"step,omitempty"`
	Inputs StepInputs `json:"inputs,omitempty" yaml:"inputs,omitempty"`
	Run    []Step     `json:"run,omitempty" yaml:"run,omitempty"`

	// Other holds every other field as it was received.
	Other map[string]json.RawMessage `json:"-" yaml:"other,omitempty,inline"`
}

var known = map[string]bool{"name": true, "step": true, "inputs": true, "run": true}

// UnmarshalJSON keeps unknown fields in Other.
func (s *Step) UnmarshalJSON(b []byte) error {
	type plain Step
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k, v := range all {
		if !known[k] {
			if p.Other == nil {
				p.Other = map[string]json.RawMessage{}
			}
			p.Other[k] = v
		}
	}
	*s = Step(p)
	return nil
}

// MarshalJSON writes the known fields and Other.
func (s Step) MarshalJSON() ([]byte, error) {
	type plain Step
	b, err := json.Marshal(plain(s))
	if err != nil || len(s.Other) == 0 {
		return b, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	out := maps.Clone(s.Other)
	maps.Copy(out, all)
	return json.Marshal(out)
}
