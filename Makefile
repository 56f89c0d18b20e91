# Shoal: two commands on a fresh machine.
#   make demo   build everything, then run the whole system with a synthetic live stream
#   make test   install what the tests need, then fmt check, clippy, every test
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: bindings build-release demo cluster-demo test deps check test-rust wasm wasm-engine web test-web fuzz bench build

# Two headless native peers join by default, so a single browser tab already shares.
DEMO_ARGS ?= --peers 2
demo: deps build-release
	./target/release/shoal demo $(DEMO_ARGS)

# Redis and a three-node cluster (every role on each node) with a synthetic origin, on this
# machine: prints the dashboard URLs and the `shoal play` command (scripts/cluster-demo.sh).
cluster-demo: deps
	$(CARGO) build --release -p shoal
	./scripts/cluster-demo.sh

build-release: web
	$(CARGO) build --release -p shoal

deps:
	./scripts/install-deps.sh

check:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Build the binaries once so integration tests find target/debug/shoal.
build:
	$(CARGO) build --workspace

# Every Rust test except the real-browser ones (tests named browser_*, run by test-web).
test-rust: build
	$(CARGO) test --workspace -- --skip browser_

# shoal-engine for the browser: crates/wasm compiled with the size-tuned `wasm` profile, then
# wasm-bindgen (same version as the crate, installed by scripts/install-deps.sh) into web/pkg/.
wasm:
	$(CARGO) build -p shoal-wasm --target wasm32-unknown-unknown --profile wasm
	wasm-bindgen --target web --remove-name-section --remove-producers-section \
	  --out-dir web/pkg target/wasm32-unknown-unknown/wasm/shoal_wasm.wasm

# The browser SDK, the demo page and the benchmark pages into web/dist/ (esbuild + tsc; prints
# the bundle sizes).
web: wasm
	cd web && npm run build

# web/ unit tests (node's test runner), then every Rust test named browser_*: headless Chromium
# inside a network namespace (needs root). One at a time: Chromium and the servers it watches
# share 2 cores, and a starved browser stalls for reasons that are not the code's.
test-web: build web
	cd web && npm test
	$(CARGO) test --workspace --tests -- browser_ --test-threads=1

# Bounded fuzzing of everything a stranger can send (peer messages, manifests). cargo-fuzz
# needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
FUZZ_SECONDS ?= 30
fuzz:
	set -o pipefail; cd fuzz && for t in wire_decode manifest_parse; do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 | tail -n 3 || exit 1; \
	done

# The engine must keep building for the browser.
wasm-engine:
	$(CARGO) build -p shoal-engine --target wasm32-unknown-unknown

test: deps check wasm-engine test-rust test-web fuzz
	@echo "make test: all passed"

# UniFFI Kotlin and Swift bindings of the native SDK (crates/ffi), written to
# crates/ffi/bindings/ and committed. Generated from the built library by the uniffi-bindgen of
# exactly the library's UniFFI version; compiling them needs a JDK/Android or Xcode toolchain,
# which this machine kind does not have.
bindings:
	$(CARGO) build -p shoal-ffi
	for lang in kotlin swift; do \
		$(CARGO) run -q -p shoal-ffi --features bindgen --bin uniffi-bindgen -- generate \
			--library target/debug/libshoal_ffi.so --language $$lang --no-format \
			--out-dir crates/ffi/bindings/$$lang || exit 1; \
	done
