package main

import "errors"

// Wired to internal/companion below; placeholders until it lands.
type proposeCmd struct{}
type reviewCmd struct{}
type reconcileCmd struct{}

func (proposeCmd) Run() error   { return errors.New("propose: not wired yet") }
func (reviewCmd) Run() error    { return errors.New("review: not wired yet") }
func (reconcileCmd) Run() error { return errors.New("reconcile: not wired yet") }
