# The two commands of the README: `make demo` and `make test`; and `make bench`.
# Both install missing Debian packages first (idempotent, quiet when nothing is missing).

JOBS ?= 2
PACKAGES := build-essential cmake ninja-build pkg-config libboost1.81-dev libsqlite3-dev \
            libzmq3-dev cppzmq-dev nlohmann-json3-dev googletest libgtest-dev libgmock-dev \
            libbenchmark-dev libcli11-dev libcpp-httplib-dev sqlite3 graphviz

.PHONY: deps configure build demo test test-sanitize bench format clean

deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing missing Debian packages:$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

configure: deps
	@cmake --preset default >/dev/null

build: configure
	@cmake --build --preset default -j $(JOBS)

# ORDERS, RATE, RESTART and DURABILITY are passed through (see samples/run_demo.sh).
demo: build
	@BIN=build/default/samples WORK=build/demo ./samples/run_demo.sh

test: build test-sanitize
	@ctest --preset default -j $(JOBS)

test-sanitize: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS) --target unit_tests
	@ctest --preset asan -j $(JOBS)

# The benchmark (docs/benchmarks.md): builds saga_bench and the samples it starts, runs it (about
# seven minutes) and rewrites docs/benchmarks.json and docs/benchmarks.md. BENCH_FLAGS is passed
# through, e.g. BENCH_FLAGS="--saturation-seconds 60" or BENCH_FLAGS=--quick.
bench: configure
	@cmake --build --preset default -j $(JOBS) --target saga_bench saga_microbench
	@build/default/bench/saga_bench --json docs/benchmarks.json --md docs/benchmarks.md $(BENCH_FLAGS)

format:
	@git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	@rm -rf build
