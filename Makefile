# Thin wrappers over CMake, ctest and scripts/. Every target first runs
# scripts/install-deps (idempotent, fast when nothing is missing).
BUILD_DIR  ?= build
BUILD_TYPE ?= RelWithDebInfo
BENCH_JSON ?=
CMAKE      ?= cmake
JOBS       ?= $(shell nproc)

.PHONY: all deps configure run test bench clean

all: configure
	$(CMAKE) --build $(BUILD_DIR) -j $(JOBS)

deps:
	@scripts/install-deps

configure: deps
	@$(CMAKE) -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

run: all
	@scripts/run

test: all
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

bench: configure
	$(CMAKE) --build $(BUILD_DIR) -j $(JOBS) --target orfeas-bench
	$(BUILD_DIR)/orfeas-bench $(if $(BENCH_JSON),--json $(abspath $(BENCH_JSON)))

clean:
	rm -rf $(BUILD_DIR)
