# writ — see README.md. Two commands matter to a newcomer:
#   make demo   the main job end to end on built-in defaults
#   make test   the whole suite (unit, fuzz seeds, end-to-end on the real GitLab Runner)
SHELL := bash
GO ?= go
STATICCHECK_VERSION := v0.8.2
BIN := bin/writ
CACHE ?= $(HOME)/.cache/writ
export WRIT_RUNNER_CACHE ?= $(CACHE)

.PHONY: all build runner test unit e2e bench lint fuzz faults demo deps templates-deps clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/writ

deps:
	bash scripts/deps.sh

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

unit:
	$(GO) test -short ./...

e2e: build
	@WRIT_RUNNER_BIN=$$(bash test/runner/build.sh) && export WRIT_RUNNER_BIN && \
	  $(GO) test -count=1 -timeout 30m -v ./test/e2e/

bench: build
	@WRIT_RUNNER_BIN=$$(bash test/runner/build.sh) && export WRIT_RUNNER_BIN && \
	  $(GO) test -run '^$$' -bench . -benchmem -timeout 40m $$($(GO) list ./... | grep -v /test/e2e) && \
	  $(GO) test -run '^$$' -bench 'BenchmarkTrivialJob|BenchmarkFleetPrepare' -benchtime 10x -timeout 20m ./test/e2e/

lint:
	@echo "== go vet"; $(GO) vet ./...
	@echo "== gofmt"; out=$$(gofmt -l cmd executor allowlist internal test); test -z "$$out" || { echo "gofmt: $$out"; exit 1; }
	@echo "== staticcheck"; GOFLAGS= $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# The fault-injection suite (kill -9 loops, a full disk, corrupt caches, a hostile or broken git server) in its
# long mode: more kills per loop. `make test` runs every case in its short mode. The full-disk cases mount a
# small tmpfs and need root; without it they are skipped with a message.
FAULT_TESTS := Fault|TestFetch|Torn|FullDisk
FAULT_PKGS := ./internal/fsutil/ ./internal/audit/ ./internal/gitrepo/ ./allowlist/ ./executor/
faults:
	set -o pipefail; WRIT_FAULTS=long $(GO) test -count=1 -timeout 30m -v -run '$(FAULT_TESTS)' $(FAULT_PKGS) | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|kills in|skipped'

# Each fuzz target for a short while (parsers of untrusted input).
FUZZTIME ?= 15s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
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
