# MaLV-OS entry points. `make run` and `make test` are the two commands a new
# user needs; both install missing Debian packages, configure and build first.
.PHONY: all deps build run test bench asan-build asan-test tsan-test fuzz format clean

PRESET ?= release
BUILD_DIR := build/$(PRESET)
MALV := $(BUILD_DIR)/src/cli/malv
JOBS ?= $(shell nproc)

all: build

deps:
	@bash scripts/install-deps.sh

build/%/build.ninja: | deps
	cmake --preset $* >/dev/null

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The main job: three VMs share one accelerator (about 70 s; see docs/operations.md).
# Options pass through, e.g. make run DEMO_ARGS="--duration 30 --out /tmp".
DEMO_ARGS ?=
run: build
	$(MALV) demo $(DEMO_ARGS)

test: build
	ctest --preset $(PRESET) -j $(JOBS)

bench: build
	$(BUILD_DIR)/bench/ipc_bench
	$(MALV) bench ipc
	$(MALV) bench mlaas
	$(MALV) bench sharing
	$(MALV) bench overhead

FUZZ_SECONDS ?= 60
fuzz: deps
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

asan-build: deps build/asan/build.ninja
	cmake --build build/asan -j $(JOBS)

asan-test: asan-build
	ctest --preset asan -j $(JOBS)

tsan-test: deps build/tsan/build.ninja
	cmake --build build/tsan -j $(JOBS)
	ctest --preset tsan -j $(JOBS)

format:
	git ls-files '*.h' '*.cpp' '*.cu' '*.c' | xargs clang-format -i

clean:
	rm -rf build
