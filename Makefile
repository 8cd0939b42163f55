# Thin wrappers over CMake, ctest and scripts/. Every target first runs
# scripts/install-deps (idempotent, fast when nothing is missing).
BUILD_DIR  ?= build
BUILD_TYPE ?= RelWithDebInfo
BENCH_JSON ?=
CMAKE      ?= cmake
JOBS       ?= $(shell nproc)
# ctest runs twice as many tests as there are cores: most of the suite's
# time is tests waiting on servers (deadlines, Prometheus' evaluation cycles,
# the drills' alerts), not CPU. On a 2-core VM whose pipeline runs at half
# the speed of the earlier ones, -j2 kept the cores ~52% busy and took 262 s
# of tests; -j4 took 198 s (74% busy) and passed beside stress --cpu 2
# (scripts/stress-suite, docs/testing.md).
TEST_JOBS  ?= $(shell echo $$(( $$(nproc) * 2 )))

REPORT_RANGE   ?= 24h
REPORT_DIR     ?= reports/$(shell date -u +%Y-%m-%dT%H%M)
REPORT_MAIL_TO ?=

.PHONY: all deps configure run test bench report clean

all: configure
	$(CMAKE) --build $(BUILD_DIR) -j $(JOBS)

deps:
	@scripts/install-deps

configure: deps
	@$(CMAKE) -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

run: all
	@scripts/run

test: all
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(TEST_JOBS)

bench: configure
	$(CMAKE) --build $(BUILD_DIR) -j $(JOBS) --target orfeas-bench
	$(BUILD_DIR)/orfeas-bench $(if $(BENCH_JSON),--json $(abspath $(BENCH_JSON)))

# A health report from the running stack's Prometheus (make run), on demand;
# REPORT_MAIL_TO=addr[,addr] also mails it (docs/reports.md).
report: all
	$(BUILD_DIR)/orfeas-report --prometheus http://127.0.0.1:$${PROMETHEUS_PORT:-$$(scripts/stack port prometheus)} \
	  --range $(REPORT_RANGE) --out $(REPORT_DIR) $(if $(REPORT_MAIL_TO),--mail-to $(REPORT_MAIL_TO))

clean:
	rm -rf $(BUILD_DIR)
