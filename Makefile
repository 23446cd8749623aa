# Gatehouse — the documented way to do things. `make help` lists the targets.

GO            ?= go
BIN           ?= bin/gatehouse
DATA_DIR      ?= ./gatehouse-data
FUZZTIME      ?= 20s
BENCHTIME     ?= 2s
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -X github.com/gatehouse-gw/gatehouse/internal/cli.Version=$(VERSION)

# The race detector needs cgo and a C compiler; without them tests still run,
# without -race, and say so.
RACE := $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v "$$($(GO) env CC)" >/dev/null 2>&1 && echo -race)

.PHONY: help run dev build deps test test-squeeze race lint openapi-lint fuzz bench bench-http cover clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: ## start the gateway on the embedded default (SQLite in ./gatehouse-data)
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/gatehouse serve --data-dir $(DATA_DIR)

dev: ## start in dev mode: in memory, simulated provider, keys printed
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/gatehouse serve --dev

build: ## build bin/gatehouse
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gatehouse

deps: ## install what the tests need beyond Go (Debian's chromium for the console tests)
	@scripts/deps.sh

test: deps ## vet, then every test (with the race detector where cgo is available)
	$(GO) vet ./...
	@[ -n "$(RACE)" ] || echo "make test: no C compiler for cgo: running without the race detector" >&2
	$(GO) test $(RACE) -count=1 ./...

# The PostgreSQL multi-replica end-to-end tests and the store tests, while one
# process holds all but 20 of the server's connections (issue #11). One
# package and one test at a time, so that together they stay within those 20
# (a three-replica cluster uses 3 × (4 + 1) + 2).
SQUEEZE_E2E ?= TestBudgetTwoReplicas|TestFault(ShortOutage|LongOutage|BlackHole|KillReplicaUnderLoad)|TestConcurrentGuessesTwoReplicas|TestPropagationAcrossReplicas|TestBreakerAcrossReplicas|TestFullServerReplicaKeepsServing
test-squeeze: ## the PostgreSQL multi-replica and store tests with all but 20 of the server's connections taken
	scripts/pg-squeeze.sh sh -c "$(GO) test $(RACE) -count=1 ./internal/store/postgres/ && \
		$(GO) test $(RACE) -count=1 -parallel 1 -run '^($(SQUEEZE_E2E))$$' ./internal/e2e/"

race: ## every test with the race detector
	$(GO) test -race -count=1 ./...

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

openapi-lint: ## lint the admin API's OpenAPI document with Redocly CLI (npm; works offline once cached)
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true npx --yes @redocly/cli@2.77.0 lint internal/admin/openapi.json

fuzz: ## run every fuzz target for FUZZTIME each
	@scripts/fuzz.sh $(FUZZTIME)

bench: ## run the benchmarks and write docs/benchmarks.md
	@scripts/bench.sh $(BENCHTIME)

bench-http: ## the real binary under load (mock upstream, SQLite, PostgreSQL) → docs/benchmarks.md
	@scripts/bench-http.sh

cover: ## test coverage report in cover.html
	$(GO) test -count=1 -coverpkg=./... -coverprofile=cover.out ./...
	$(GO) tool cover -func=cover.out | tail -1
	$(GO) tool cover -html=cover.out -o cover.html

clean: ## remove build output (not the data directory)
	rm -rf bin cover.out cover.html
