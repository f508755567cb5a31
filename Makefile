# tagarela -- the two commands users need are `make run` and `make test`.
# CMake does the building underneath; this file installs what is missing,
# drives the builds and runs every test suite.

BUILD      ?= build
ASAN_BUILD ?= build-asan
CMAKE_ARGS ?=
ARGS       ?=
PYTHON     := /usr/bin/python3
JOBS       ?= $(shell nproc)
# The integration suite runs once per server shape: the chat in the
# connections' loop (1) and loops on threads around the hub (2).
THREAD_SHAPES ?= 1 2
# Integration tests mostly wait on the server and each starts its own on free
# ports: three at a time (pytest-xdist) take a third of the time on 2 cores.
PYTEST_JOBS ?= 3

.PHONY: all deps test-deps build run test suite unit integration capture browser check-asan fuzz bench bench-tls bench-capture bench-cluster clean adversarial attacks soak install uninstall deb

# `make install` puts the binary, the man pages, the systemd unit and the
# example config under DESTDIR + these; an operator's config is kept.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
DESTDIR    ?=
CONF       := $(DESTDIR)$(SYSCONFDIR)/tagarela/tagarela.conf
MAN1       := tagarela.1 tagarela-serve.1 tagarela-capture.1 tagarela-bench.1
MAN5       := tagarela.conf.5

all: build

deps:
	@sh scripts/install-deps.sh

test-deps:
	@sh scripts/install-deps.sh --test

# Builds only: `make run` and `make test` install what is missing first.
build:
	@cmake -S . -B $(BUILD) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

run: deps
	@$(MAKE) --no-print-directory build
	./$(BUILD)/tagarela serve $(ARGS)

test: test-deps
	@$(MAKE) --no-print-directory suite attacks BUILD=$(BUILD)

# The attacks' memory bounds mean nothing under ASan (it keeps freed
# memory in quarantine): they run in the plain build only.
check-asan: test-deps
	@$(MAKE) --no-print-directory suite BUILD=$(ASAN_BUILD) THREAD_SHAPES=2 \
	  CMAKE_ARGS="-DTAGARELA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

# The whole suite against the build in $(BUILD): units, integration, browser.
suite: build unit integration capture browser

unit:
	cd $(BUILD) && ctest --output-on-failure

integration:
	@for t in $(THREAD_SHAPES); do \
	  echo "integration tests, --threads $$t"; \
	  TAGARELA_THREADS=$$t TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela \
	    $(PYTHON) -m pytest -q -p no:cacheprovider -n $(PYTEST_JOBS) tests/integration || exit 1; \
	done

capture:
	TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela $(PYTHON) -m pytest -q -p no:cacheprovider tests/capture

browser:
	cd tests/browser && npm ci --no-audit --no-fund --silent && \
	  TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela npm test --silent

# libFuzzer on the codec, the HTTP parser, the chat and the capture decoder
# (clang, ASan + UBSan), FUZZ_SECONDS each (default 60): tests/fuzz/run.sh.
fuzz:
	@sh scripts/install-deps.sh --fuzz
	@bash tests/fuzz/run.sh

# The servers side by side (tagarela, uWebSockets.js, Node ws): bench/results/.
bench: test-deps build
	TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela bash bench/run.sh

# What TLS costs (docs/tls.md): memory per idle connection, CPU per broadcast
# delivery at a fixed rate and at full speed, and deliveries while clients
# make their handshakes; ws:// against wss://.
bench-tls: build
	TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela bash bench/tls.sh idle 5000
	TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela bash bench/tls.sh broadcast 10 400
	TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela bash bench/tls.sh broadcast 50
	TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela bash bench/tls.sh storm

# tagarela capture against tcpdump and tshark on a generated 300 MB pcap.
# Cluster mode on a real redis-server: 1, 2 and 3 nodes (docs/cluster.md).
bench-cluster: build test-deps
	TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela $(PYTHON) bench/cluster/run.py

bench-capture: build test-deps
	TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela $(PYTHON) bench/capture/run.py

# Issue 10's attacks against the default limits, once per server shape
# (TAGARELA_SLOW=1 adds the tests over a minute): tests/adversarial/.
adversarial: test-deps build
	@$(MAKE) --no-print-directory attacks

attacks:
	@for t in $(THREAD_SHAPES); do \
	  echo "adversarial tests, --threads $$t"; \
	  TAGARELA_THREADS=$$t TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/adversarial || exit 1; \
	done

# Every attacker at once beside honest traffic for SOAK_SECONDS (default
# 600), not in CI: bench/results/soak.json and soak.png.
soak: test-deps build
	TAGARELA_BIN=$(CURDIR)/$(BUILD)/tagarela $(PYTHON) bench/soak/run.py

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/tagarela
	install -m 755 $(BUILD)/tagarela $(DESTDIR)$(BINDIR)/tagarela
	cd man && install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	cd man && install -m 644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	sed -e 's|/usr/bin/tagarela|$(BINDIR)/tagarela|g' -e 's|/etc/tagarela/|$(SYSCONFDIR)/tagarela/|g' \
	  contrib/systemd/tagarela.service > $(DESTDIR)$(UNITDIR)/tagarela.service
	chmod 644 $(DESTDIR)$(UNITDIR)/tagarela.service
	@if [ -e $(CONF) ]; then echo "kept $(CONF)"; else install -m 644 contrib/tagarela.conf $(CONF); fi

# The config goes only when it is still the one installed: an operator's
# edits are never deleted.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/tagarela $(DESTDIR)$(UNITDIR)/tagarela.service
	cd $(DESTDIR)$(MANDIR)/man1 2>/dev/null && rm -f $(MAN1) || true
	cd $(DESTDIR)$(MANDIR)/man5 2>/dev/null && rm -f $(MAN5) || true
	@if cmp -s contrib/tagarela.conf $(CONF); then rm -f $(CONF); \
	  elif [ -e $(CONF) ]; then echo "kept $(CONF) (changed since installed)"; fi
	-rmdir $(DESTDIR)$(SYSCONFDIR)/tagarela 2>/dev/null

# The Debian package, built in $(BUILD)/deb from a copy of the tree:
# $(BUILD)/deb/tagarela_*.deb (debian/, docs/operating.md).
deb:
	@sh scripts/install-deps.sh --deb
	@sh scripts/build-deb.sh $(BUILD)/deb

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
