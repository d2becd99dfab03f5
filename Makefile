# ssehub: the README's commands. `make run` and `make test` are all a newcomer needs.

CARGO ?= cargo
ARGS ?=

.PHONY: run test test-deps lint fmt release release-minimal check-deps bench interop deploy-check clean

## Build (release) and start the server on its defaults; pass flags with ARGS="--listen 0.0.0.0:8080".
run:
	$(CARGO) run --release -- $(ARGS)

## A tiny run of the load generator (so the benches do not rot; it fails
## only if the harness breaks, never on a figure), then the unit and
## integration tests (real sockets, HTTP/1.1 and h2c).
test: test-deps
	$(CARGO) build --release
	$(CARGO) bench --bench load -- --size small
	$(CARGO) bench --bench tls -- --size small
	$(CARGO) test

## What the tests need beyond cargo: a real redis-server for the shared-log
## tests (Debian's package; installed when missing and we are root).
test-deps:
	@command -v redis-server >/dev/null || { \
	  [ "$$(id -u)" = 0 ] || { echo "the tests need redis-server: apt-get install redis-server"; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

## Formatting and clippy, warnings as errors, with and without TLS.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --no-default-features -- -D warnings

fmt:
	$(CARGO) fmt --all

## Load tests and micro benchmarks at full size (about 3 minutes: the loopback
## write floor first, then every scenario at the server defaults), then the
## shared-log benches (redis-publish, cluster; they need redis-server); see BENCHMARKS.md.
bench: test-deps
	$(CARGO) build --release
	$(CARGO) bench --bench micro
	$(CARGO) bench --bench load
	$(CARGO) bench --bench tls
	$(CARGO) bench --bench redis

## Real clients against the release binary: curl, nghttp, npm eventsource,
## httpx-sse, headless Chromium (installs what is missing from apt, npm, PyPI).
interop:
	$(CARGO) build --release
	bash interop/run.sh

## Checks deploy/ssehub.service with systemd-analyze verify (installs
## Debian's systemd package if missing). verify insists that ExecStart
## exists, so a copy pointing at the release binary is checked.
deploy-check:
	$(CARGO) build --release
	@command -v systemd-analyze >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; }
	@dir=$$(mktemp -d) && \
	  sed "s|^ExecStart=/usr/local/bin/ssehub|ExecStart=$(CURDIR)/target/release/ssehub|" deploy/ssehub.service > $$dir/ssehub.service && \
	  systemd-analyze verify $$dir/ssehub.service && rm -r $$dir && echo "deploy/ssehub.service: ok"

## The stripped default binary (fat LTO, one codegen unit, panic=abort), with TLS.
release:
	$(CARGO) build --release
	@echo "target/release/ssehub (default, with TLS): $$(stat -c %s target/release/ssehub) bytes"

## The smallest binary: no TLS (--no-default-features, and none of the
## optional backends), in its own target dir so it does not replace the
## default one. Says MISS when it is past the 1.25 MiB target (1310720 bytes).
MINIMAL_LIMIT := 1310720
release-minimal:
	$(CARGO) build --release --no-default-features --target-dir target/minimal
	@size=$$(stat -c %s target/minimal/release/ssehub); \
	echo "target/minimal/release/ssehub (no TLS): $$size bytes (limit $(MINIMAL_LIMIT))"; \
	test $$size -le $(MINIMAL_LIMIT) || echo "MISS: the minimal binary is over the 1.25 MiB target (JWT verification and the access log are in every build; see BENCHMARKS.md)"

## TLS must not bring in aws-lc (a C build) or OpenSSL: ring only.
check-deps:
	@if $(CARGO) tree -i aws-lc-rs --all-features -e all >/dev/null 2>&1; then \
		echo "aws-lc-rs is in the dependency tree:"; $(CARGO) tree -i aws-lc-rs --all-features -e all; exit 1; fi
	@if $(CARGO) tree -i openssl-sys --all-features -e all >/dev/null 2>&1; then \
		echo "openssl-sys is in the dependency tree"; exit 1; fi
	@echo "no aws-lc-rs, no openssl-sys"

clean:
	$(CARGO) clean
