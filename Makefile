# `make test` runs every check CI runs; `make demo` shows drift repair on the talk's example.
# `make install` builds the release binary and installs it (stripped) with its systemd units,
# environment files, shell completions and man pages: PREFIX (default /usr/local) and DESTDIR
# as usual; `make install-files` does the same without building (BIN= names the binary).
# `make uninstall` removes what `make install` installed, except the environment files.
# `make deb` builds a Debian package of the same files (scripts/build-deb) into
# $(TARGET_DIR)/deb. docs/install.md says what goes where.
# `make fuzz` runs the property tests (tests/fuzz.rs and the path normaliser's) far longer than `cargo test` does:
# PROPTEST_CASES cases of each property (slow ones proportionally fewer), in a debug build so
# that arithmetic overflow panics too (roughly half an hour on two cores). FUZZ_CASES=N
# overrides the default of 100000.
.PHONY: deps build test lint unit demo bench fuzz install install-files uninstall deb

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
BIN ?= $(TARGET_DIR)/release/mgmt

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

install: build install-files

# The environment files are the operator's: an existing one is never overwritten.
install-files:
	test -x "$(BIN)" || { echo "no binary at $(BIN): run make build, or give BIN=" >&2; exit 1; }
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(SYSCONFDIR)/default" \
		"$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(DATADIR)/bash-completion/completions" \
		"$(DESTDIR)$(DATADIR)/zsh/site-functions" "$(DESTDIR)$(DATADIR)/fish/vendor_completions.d"
	install -s -m 0755 "$(BIN)" "$(DESTDIR)$(BINDIR)/mgmt"
	for u in mgmt.service mgmt-etcd.service; do \
		sed 's|@BINDIR@|$(BINDIR)|g' "dist/systemd/$$u" >"$(DESTDIR)$(UNITDIR)/$$u.tmp" && \
		chmod 0644 "$(DESTDIR)$(UNITDIR)/$$u.tmp" && mv "$(DESTDIR)$(UNITDIR)/$$u.tmp" "$(DESTDIR)$(UNITDIR)/$$u" || exit 1; \
	done
	for f in mgmt mgmt-etcd; do \
		test -e "$(DESTDIR)$(SYSCONFDIR)/default/$$f" || install -m 0644 "dist/default/$$f" "$(DESTDIR)$(SYSCONFDIR)/default/$$f" || exit 1; \
	done
	"$(BIN)" completion bash >"$(DESTDIR)$(DATADIR)/bash-completion/completions/mgmt"
	"$(BIN)" completion zsh >"$(DESTDIR)$(DATADIR)/zsh/site-functions/_mgmt"
	"$(BIN)" completion fish >"$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/mgmt.fish"
	"$(BIN)" manpages "$(DESTDIR)$(MANDIR)/man1"
	chmod 0644 "$(DESTDIR)$(DATADIR)/bash-completion/completions/mgmt" \
		"$(DESTDIR)$(DATADIR)/zsh/site-functions/_mgmt" \
		"$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/mgmt.fish" "$(DESTDIR)$(MANDIR)/man1/"mgmt*.1

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/mgmt" "$(DESTDIR)$(UNITDIR)/mgmt.service" "$(DESTDIR)$(UNITDIR)/mgmt-etcd.service" \
		"$(DESTDIR)$(DATADIR)/bash-completion/completions/mgmt" "$(DESTDIR)$(DATADIR)/zsh/site-functions/_mgmt" \
		"$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/mgmt.fish" \
		"$(DESTDIR)$(MANDIR)/man1/mgmt.1" "$(DESTDIR)$(MANDIR)/man1/"mgmt-*.1

deb: build
	./scripts/build-deb "$(BIN)" "$(TARGET_DIR)/deb"
