# duet — build, test, run and measure.
# `make help` lists the targets. Every target works from a clean clone.

SHELL := bash
.SHELLFLAGS := -o pipefail -euc
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

GO        ?= go
BIN       := $(CURDIR)/bin
# Every module listed in go.work; tests and vet run over all of them at once.
MODULES   := $(shell $(GO) list -m -f '{{.Path}}' 2>/dev/null)
PKGS      := $(addsuffix /...,$(MODULES))
CMDS      := $(addprefix ./,$(addsuffix /...,$(wildcard */cmd)))
MODELS_DIR ?= $(abspath $(CURDIR)/../shared/models)
MODEL     ?= $(firstword $(wildcard $(MODELS_DIR)/stories260K.gguf))
export MODEL
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/duet-llm/duet/engine/version.Version=$(VERSION)
TEST_TIMEOUT ?= 15m
# Debian packages the build and tests need, as command=package pairs (a
# command starting with / is a file that must exist): protoc for the
# generated code, Chromium for the dashboard test, libibverbs for the RDMA
# library and header-layout tests.
DEB_DEPS  := protoc=protobuf-compiler chromium=chromium \
	/usr/include/infiniband/verbs.h=libibverbs-dev
PROTOS    := $(shell find proto/duet -name '*.proto' | sort)

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install what the build and tests need (Debian packages, Go modules)
	@missing=""; for pair in $(DEB_DEPS); do cmd=$${pair%%=*}; pkg=$${pair##*=}; \
	  case $$cmd in /*) [ -e $$cmd ] ;; *) command -v $$cmd >/dev/null 2>&1 ;; esac || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	$(GO) mod download

.PHONY: build
build: ## build every binary into ./bin
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(CMDS)

.PHONY: test
test: deps verify ## install what is needed, check formatting and run every test
	$(GO) vet $(PKGS)
	DUET_MODELS_DIR=$(MODELS_DIR) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

.PHONY: test-short
test-short: ## the fast tests only (-short)
	$(GO) test -short -count=1 $(PKGS)

.PHONY: run
run: build ## start a local cluster (embedded etcd, router, prefill and decode node); MODEL=path, ROUTER_ADDR=host:port
	$(BIN)/duet-local --bin $(BIN) --shared-models $(MODELS_DIR) --cache $(CURDIR)/.cache/models

.PHONY: generate
generate: build ## generate a story with the engine alone (MODEL=path, PROMPT=text)
	@if [ -z "$(MODEL)" ]; then echo "no model: set MODEL=path/to/model.gguf" >&2; exit 2; fi
	$(BIN)/duet-generate --model "$(MODEL)" --prompt "$${PROMPT:-Once upon a time}" --max-tokens $${MAX_TOKENS:-128} --temperature 0

.PHONY: bench
bench: bench-engine bench-kv bench-pd ## run every benchmark suite (about 15 minutes on 2 cores)

.PHONY: bench-kv
bench-kv: ## KV transfer throughput and latency against raw loopback TCP
	$(GO) run ./kvtransfer/cmd/duet-bench-kv

.PHONY: bench-engine
bench-engine: ## engine decode/prefill throughput against memory-bandwidth and FMA limits
	$(GO) run ./engine/cmd/duet-bench-engine --models-dir $(MODELS_DIR) --cache $(CURDIR)/.cache/models

.PHONY: bench-pd
bench-pd: ## PD vs colocated on the same cores and the synthetic 110M model: side-by-side table, RESULT lines (BENCH_PD_FLAGS=...)
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./router/cmd/duet-router ./prefill-node/cmd/duet-prefill ./decode-node/cmd/duet-decode ./bench/cmd/duet-bench-pd
	$(BIN)/duet-bench-pd --bin $(BIN) --models-dir $(MODELS_DIR) --cache $(CURDIR)/.cache/models --out $(CURDIR)/.cache/bench-pd $(BENCH_PD_FLAGS)

.PHONY: lint
lint: verify ## gofmt, go vet and staticcheck-free checks
	$(GO) vet $(PKGS)

# Container images from docker/Dockerfile: one image holding duet-router,
# duet-prefill and duet-decode, and its RDMA variant (docker/README.md).
IMAGE      ?= ghcr.io/duet-llm/duet
IMAGE_ARGS  = --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
              --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ)

.PHONY: images
images: ## build the images $(IMAGE):$(VERSION) and $(IMAGE):$(VERSION)-rdma (needs a Docker engine); IMAGE=repository
	@command -v docker >/dev/null 2>&1 || { echo "make images: no docker command on this machine; install Docker with BuildKit to build the images. Nothing was built." >&2; exit 2; }
	@docker info >/dev/null 2>&1 || { echo "make images: the docker client is here but no Docker engine answers (docker info failed); start dockerd or set DOCKER_HOST. Nothing was built." >&2; exit 2; }
	DOCKER_BUILDKIT=1 docker build -f docker/Dockerfile --target runtime $(IMAGE_ARGS) -t $(IMAGE):$(VERSION) .
	DOCKER_BUILDKIT=1 docker build -f docker/Dockerfile --target rdma $(IMAGE_ARGS) -t $(IMAGE):$(VERSION)-rdma .

# helm is built from its Go module, pinned as a tool in helm/charttest/go.mod.
.PHONY: helm-lint
helm-lint: ## helm lint --strict and helm template of helm/duet, with the defaults and each helm/duet/ci values file; then the chart tests
	@cd helm/charttest && for f in "" ../duet/ci/*-values.yaml; do \
	  echo "helm lint --strict; helm template: $${f:-default values}"; \
	  $(GO) tool helm lint --strict --quiet ../duet $${f:+-f $$f} || exit 1; \
	  $(GO) tool helm template duet ../duet --kube-version 1.30.0 $${f:+-f $$f} >/dev/null || exit 1; \
	done
	cd helm/charttest && $(GO) test -count=1 .

.PHONY: proto
proto: deps ## regenerate the gRPC/protobuf Go code from proto/duet/**/*.proto
	@$(MAKE) proto-gen OUT=proto

# proto-gen writes the generated code under $(OUT) with the pinned plugins
# (go tool directives in proto/go.mod) and Debian's protoc.
.PHONY: proto-gen
proto-gen:
	@mkdir -p $(BIN)/protoc-plugins
	cd proto && $(GO) build -o $(BIN)/protoc-plugins/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	PATH="$(BIN)/protoc-plugins:$$PATH" protoc -I proto \
	  --go_out=$(OUT) --go_opt=paths=source_relative \
	  --go-grpc_out=$(OUT) --go-grpc_opt=paths=source_relative \
	  $(patsubst proto/%,%,$(PROTOS))

.PHONY: verify
verify: verify-fmt verify-tidy verify-proto ## fail on drift: formatting, go.mod tidiness, generated code

.PHONY: verify-fmt
verify-fmt:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go' | grep -v '\.pb\.go$$') 2>&1); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: verify-proto
verify-proto: deps ## regenerate the protobuf code into a temporary folder and diff it with the checked-in code
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(MAKE) proto-gen OUT=$$tmp >/dev/null; \
	for f in $$(cd $$tmp && find . -name '*.go'); do \
	  diff -u proto/$$f $$tmp/$$f || { echo "generated code is stale: run make proto"; exit 1; }; \
	done; \
	extra=$$(cd proto && find duet -name '*.pb.go' | while read f; do [ -f $$tmp/$$f ] || echo $$f; done); \
	if [ -n "$$extra" ]; then echo "generated files without a .proto: $$extra"; exit 1; fi

.PHONY: verify-tidy
verify-tidy:
	@for m in $$($(GO) list -m -f '{{.Dir}}'); do \
	  (cd $$m && $(GO) mod tidy -diff) || { echo "go.mod not tidy in $$m: run go mod tidy"; exit 1; }; \
	done

.PHONY: docs
docs: build ## regenerate docs/configuration.md from the binaries' flags
	@{ echo "# Configuration"; echo; \
	  echo "Every flag of duet-router, duet-prefill and duet-decode can also be set through the environment"; \
	  echo "as \`DUET_<FLAG>\` (upper case, dashes as underscores); a flag on the command line wins."; \
	  echo "Generated by \`make docs\` from the binaries."; \
	  for b in duet-router duet-prefill duet-decode duet-local duet-generate duet-synth duet-bench duet-bench-engine duet-bench-kv duet-bench-pd; do \
	    echo; echo "## $$b"; echo; echo '```'; $(BIN)/$$b -h 2>&1 | sed -e "s|$(CURDIR)|.|g" || true; echo '```'; \
	  done; } > docs/configuration.md

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
