# Ferry's Makefile. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO            ?= go
# sqlc is a tool of its own module (internal/tools), so its dependencies stay
# out of Ferry's go.mod; `go tool` caches the built binary.
SQLC          := $(GO) tool -modfile=internal/tools/go.mod sqlc
STATICCHECK   := $(GO) tool -modfile=internal/tools/go.mod staticcheck
# Spectral lints the committed OpenAPI document; npx fetches the pinned
# version once (Node.js is needed for make verify only, never to build).
SPECTRAL      := npx --yes @stoplight/spectral-cli@6.16.3
BIN           := bin/ferry
DATABASE_URL  ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export DATABASE_URL
# Tests and the demo need a PostgreSQL; .ci/db-up starts (or installs) one.
DB_UP         := bash .ci/db-up

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: demo
demo: build ## sync the demo warehouse into a demo ERP database, twice, and show what happened
	@$(DB_UP)
	./$(BIN) demo

.PHONY: test
test: ## run every test against the local PostgreSQL (engine, connectors, scripting under -race)
	@$(DB_UP)
	$(GO) test -count=1 -timeout 15m -race ./engine/... ./scripting/...
	@# failpoints: crash tests kill ferry at named points of a run (cmd/ferry/crash_test.go).
	$(GO) test -count=1 -timeout 15m -tags failpoints $$($(GO) list ./... | grep -v -e '/ferry/engine' -e '/ferry/scripting')

# How many seeds make chaos runs (make chaos SEEDS=50).
SEEDS ?= 200

.PHONY: chaos
chaos: ## run the chaos loop: SEEDS seeds of faults and kills, then the invariants (cmd/ferry/chaos_test.go)
	@$(DB_UP)
	$(GO) test -count=1 -timeout 90m -tags 'chaos failpoints' -run TestChaos ./cmd/ferry/ -args -chaos.seeds $(SEEDS)

.PHONY: build
build: ## build bin/ferry (no cgo)
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/ferry

.PHONY: generate
generate: ## regenerate the sqlc code in queries/ and api/openapi.json
	$(SQLC) generate
	$(GO) test ./api -run '^TestOpenAPIDocumentIsCommitted$$' -update -count=1

.PHONY: verify
verify: ## fail if generated code drifted, code is unformatted, or vet, staticcheck or the OpenAPI linter complain
	$(SQLC) diff
	$(SPECTRAL) lint --fail-severity=hint api/openapi.json
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags failpoints ./cmd/...
	$(GO) vet -tags 'chaos failpoints' ./cmd/...
	$(STATICCHECK) ./...
	CGO_ENABLED=0 $(GO) build -o /dev/null ./...

.PHONY: bench
bench: ## run the benchmarks (engine, connectors, scripting) and print their figures
	@$(DB_UP)
	@# Whole runs are measured once each; micro-benchmarks iterate as usual.
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x -timeout 60m ./engine/ ./api/ ./internal/scheduler/
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./engine/connector/... ./scripting/...
