# ssehub: the README's commands. `make run` and `make test` are all a newcomer needs.

CARGO ?= cargo
ARGS ?=

.PHONY: run test lint fmt release bench clean

## Build (release) and start the server on its defaults; pass flags with ARGS="--listen 0.0.0.0:8080".
run:
	$(CARGO) run --release -- $(ARGS)

## Unit and integration tests (real sockets, HTTP/1.1 and h2c).
test:
	$(CARGO) test --all-targets

## Formatting and clippy, warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## The minimal stripped binary (fat LTO, one codegen unit, panic=abort).
release:
	$(CARGO) build --release
	@ls -l target/release/ssehub

clean:
	$(CARGO) clean
