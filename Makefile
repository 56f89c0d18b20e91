# Shoal: two commands on a fresh machine.
#   make demo   build everything, then run the whole system with a synthetic live stream
#   make test   install what the tests need, then fmt check, clippy, every test
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: build-release demo test deps check test-rust wasm web test-web fuzz bench build

demo: deps build-release
	./target/release/shoal demo

build-release: wasm
	$(CARGO) build --release -p shoal

deps:
	./scripts/install-deps.sh

check:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Build the binaries once so integration tests find target/debug/shoal.
build:
	$(CARGO) build --workspace

test-rust: build
	$(CARGO) test --workspace

wasm:
	@echo "wasm: not built yet"

test-web:
	@echo "web tests: not built yet"

fuzz:
	@echo "fuzz: not built yet"

test: deps check test-rust test-web fuzz
	@echo "make test: all passed"
