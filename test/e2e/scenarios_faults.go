package e2e

import "strings"

// Scenarios for a hostile or broken git server (issue #12), on the real
// runner. The fault-injection suite itself (kill -9, full disk, corrupt
// caches, crafted packs) runs in the packages: see docs/testing.md.
func init() {
	Scenarios = append(Scenarios,
		Scenario{
			Name: "source-object-over-fetch-limit", Category: CatSource, Robustness: true,
			Description: "main moved to a trusted-signed commit adding a 101 MiB file of zeros (a 100 KB pack): over writ's default fetch.max_object_bytes, so the fetch is refused while the pack is read, before anything is inflated.",
			Mutate: func(f *Fixture) error {
				child, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"assets/blob.bin": strings.Repeat("\x00", 101<<20)}, "add a large asset", Trusted)
				if err != nil {
					return err
				}
				setSha(f.Payload, child)
				return f.Repos.SetBranch(RepoApp, LegitRef, child)
			},
			PassThrough: legitRan,
			Shows:       "the legitimate deploy ran with the 101 MiB file checked out",
			Writ:        refuse("source", "exceeds the limit fetch.max_object_bytes = 104857600"),
		},
	)
}
