# `make test` runs every check CI runs; `make demo` shows drift repair on the talk's example.
# `make fuzz` runs the property tests (tests/fuzz.rs and the path normaliser's) far longer than `cargo test` does:
# PROPTEST_CASES cases of each property (slow ones proportionally fewer), in a debug build so
# that arithmetic overflow panics too (roughly half an hour on two cores). FUZZ_CASES=N
# overrides the default of 100000.
.PHONY: deps build test lint unit demo bench fuzz

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

FUZZ_CASES ?= 100000

fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) cargo test --test fuzz -- --test-threads=2
	PROPTEST_CASES=$(FUZZ_CASES) cargo test --lib the_normal_form_is_stable

bench: build
	cargo bench --bench engine
