# `make test` runs every check CI runs; `make demo` shows drift repair on the talk's example.
.PHONY: deps build test lint unit demo bench

deps:
	./scripts/install-deps.sh

build:
	cargo build --release

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

unit:
	cargo test

test: deps lint unit

demo: deps build
	./examples/demo.sh

bench: build
	cargo bench --bench engine
