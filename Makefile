# Entry points. The build itself is CMake; this file only strings the steps together.
#   make demo   - install deps, build, start the local control plane, run the controller
#   make test   - lint, unit tests (ASan+UBSan), e2e tests against the local control plane
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= 2

.PHONY: all deps build build-asan lint format unit e2e test demo demo-down control-plane \
        containerd2 cluster-up cluster-down fuzz fuzz-smoke clean

all: build

deps:
	hack/install-deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCO_ASAN=OFF -DCO_UBSAN=OFF >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

build-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCO_ASAN=ON -DCO_UBSAN=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

lint: build
	hack/lint.sh

format:
	hack/lint.sh --fix

unit: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure

control-plane:
	hack/build-control-plane.sh >/dev/null

containerd2:
	hack/build-containerd2.sh >/dev/null

cluster-up: control-plane
	hack/cluster-up.sh

cluster-down:
	hack/cluster-down.sh

e2e: build build-asan control-plane containerd2
	CO_BIN=$(CURDIR)/$(ASAN_BUILD)/confidential-operator \
	  CO_CONTAINERD2=$$(hack/build-containerd2.sh) \
	  CO_PLAIN_BIN=$(CURDIR)/$(BUILD)/confidential-operator test/e2e/run.sh

fuzz-smoke:
	hack/fuzz.sh 20

fuzz:
	hack/fuzz.sh 300

test: deps lint unit fuzz-smoke e2e

demo: deps build control-plane
	CO_BIN=$(CURDIR)/$(BUILD)/confidential-operator hack/demo.sh

demo-down:
	hack/demo.sh down

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
