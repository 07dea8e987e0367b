# writ — see README.md. Two commands matter to a newcomer:
#   make demo   the main job end to end on built-in defaults
#   make test   the whole suite (unit, fuzz seeds, end-to-end on the real GitLab Runner)
SHELL := bash
GO ?= go
STATICCHECK_VERSION := v0.8.2
BIN := bin/writ
CACHE ?= $(HOME)/.cache/writ
export WRIT_RUNNER_CACHE ?= $(CACHE)

.PHONY: all build runner test unit e2e bench lint fuzz faults demo deps templates-deps clean docs dist release-test

all: build

# The commit goes in through ldflags: the toolchain's own VCS stamp is off on
# this machine (GOFLAGS=-buildvcs=false) and absent in git worktrees, and
# `writ version`, the runner's driver line and every job log must name it.
VERSION_PKG := gitlab.com/writ-ci/writ/internal/version
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
GIT_DATE := $(shell git log -1 --format=%cI 2>/dev/null)
GIT_DIRTY := $(shell test -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" && echo true || echo false)
LDFLAGS := -X $(VERSION_PKG).Commit=$(GIT_COMMIT) -X $(VERSION_PKG).Date=$(GIT_DATE) -X $(VERSION_PKG).Modified=$(GIT_DIRTY)

# Without cgo, as the release builds it (release/build.go): a static binary
# starts without the dynamic linker, and the runner starts writ eight or
# more times per job.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/writ
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/writ-sandbox-init ./cmd/writ-sandbox-init

deps:
	bash scripts/deps.sh

# Regenerate the docs blocks that come from the code (config reference, exit
# codes, examples printed by the binary). Tests fail until this is run after
# a change to them.
docs:
	$(GO) test -count=1 -run '^TestReference$$' ./internal/config -update
	$(GO) test -count=1 -run '^TestDocs' ./cmd/writ -update
	$(GO) test -count=1 -run '^TestDocs' ./executor -update

# The real GitLab Runner, built from the Go module proxy (cached; minutes when cold).
runner:
	@bash test/runner/build.sh >/dev/null

templates-deps:
	@bash ci-templates/test/install-gitlab-ci-local.sh >/dev/null

test: build lint
	@echo "== building the real GitLab Runner (cached after the first run)"
	@WRIT_RUNNER_BIN=$$(bash test/runner/build.sh) && \
	  WRIT_GITLAB_CI_LOCAL=$$(bash ci-templates/test/install-gitlab-ci-local.sh) && \
	  export WRIT_RUNNER_BIN WRIT_GITLAB_CI_LOCAL && \
	  echo "== go test (runner: $$WRIT_RUNNER_BIN)" && \
	  $(GO) test -count=1 -timeout 40m ./...
	@$(MAKE) --no-print-directory release-test

# The release tool is a module of its own (release/), so that its packaging
# libraries never become writ's dependencies. Its test builds this machine's
# platform once, signs, verifies, and unpacks the .deb into a scratch root.
release-test:
	@echo "== release (packages, SBOM, signature)"
	cd release && $(GO) vet ./... && $(GO) test -count=1 -timeout 15m ./...

# Every release artifact, reproducibly, for linux/amd64 and linux/arm64:
# binaries, CycloneDX SBOMs, .deb and .rpm, SHA256SUMS and its Sigstore
# bundle (signed with $$WRIT_RELEASE_KEY, or a throw-away key). VERSION=v0.1.0
# names the release (default: the tag at HEAD, or v0.0.0-dev+<commit>).
DIST ?= bin/dist
dist:
	cd release && $(GO) run . -src .. -out ../$(DIST) $(if $(VERSION),-version $(VERSION))
	cd release && $(GO) run . verify -key ../$(DIST)/release-key.pub ../$(DIST) 2>/dev/null || \
	  echo "dist: verify with the release public key: (cd release && go run . verify -key KEY.pub ../$(DIST))"

unit:
	$(GO) test -short ./...

e2e: build
	@WRIT_RUNNER_BIN=$$(bash test/runner/build.sh) && export WRIT_RUNNER_BIN && \
	  $(GO) test -count=1 -timeout 30m -v ./test/e2e/

bench: build
	@WRIT_RUNNER_BIN=$$(bash test/runner/build.sh) && export WRIT_RUNNER_BIN && \
	  $(GO) test -run '^$$' -bench . -benchmem -timeout 40m $$($(GO) list ./... | grep -v /test/e2e) && \
	  $(GO) test -run '^$$' -bench 'BenchmarkTrivialJob|BenchmarkFleetPrepare|BenchmarkSandboxOverhead' -benchtime 10x -timeout 20m ./test/e2e/

lint:
	@echo "== go vet"; $(GO) vet ./...
	@echo "== gofmt"; out=$$(gofmt -l cmd executor allowlist internal sandbox test release); test -z "$$out" || { echo "gofmt: $$out"; exit 1; }
	@echo "== staticcheck"; GOFLAGS= $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# The fault-injection suite (kill -9 loops, a full disk, corrupt caches, a hostile or broken git server) in its
# long mode: more kills per loop. `make test` runs every case in its short mode. The full-disk cases mount a
# small tmpfs and need root; without it they are skipped with a message.
FAULT_TESTS := Fault|TestFetch|Torn|FullDisk
FAULT_PKGS := ./internal/fsutil/ ./internal/audit/ ./internal/gitrepo/ ./allowlist/ ./executor/
faults:
	set -o pipefail; WRIT_FAULTS=long $(GO) test -count=1 -timeout 30m -v -run '$(FAULT_TESTS)' $(FAULT_PKGS) | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|kills in|skipped'

# Each fuzz target for a short while (parsers of untrusted input).
# FUZZMINIMIZE bounds how long the fuzzer shrinks each input that finds new
# coverage (go test -fuzzminimizetime). Go's default, 60s per input, stops
# all fuzzing meanwhile: a target whose exec takes milliseconds
# (FuzzIncrementalParse: two parses and a store) spent whole runs shrinking
# its first few finds, 15-18 execs a minute. 100 execs per input keep the
# workers fuzzing; to shrink a crasher further, run its target alone with
# -fuzzminimizetime 60s.
FUZZTIME ?= 15s
FUZZMINIMIZE ?= 100x
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg || exit 1; \
	  done; \
	done

# The story on the real runner: a deploy admitted, attacks refused, with the reasons.
demo: build
	@bash scripts/deps.sh
	@WRIT_RUNNER_BIN=$$(bash test/runner/build.sh) && export WRIT_RUNNER_BIN && \
	  $(GO) test -c -o bin/e2e.test ./test/e2e && \
	  WRIT_DEMO=1 bin/e2e.test -test.run '^TestDemo$$' -test.timeout 10m

clean:
	rm -rf bin
