# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv at the repo root once and reuse it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgedeploy-installed
# the embedded default: trained CIFAR-10 weights shipped in the package, real test images
DEMO_MODEL ?= shufflenet_v2_x0_5.cifar10
DEMO_DATA  ?= ../shared/data/cifar10.zip
DEMO_OUT   ?= out/demo

.PHONY: setup demo test test-all benchmark clean

setup: $(STAMP)

# torch is pinned to the CPU wheel this machine keeps locally; any other spec pulls a
# multi-GB CUDA build. The host extra's torch range is then already satisfied.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deploy export $(DEMO_MODEL) --target tflite --output $(DEMO_OUT)
	$(BIN)/runner eval $(DEMO_OUT)/$(DEMO_MODEL).tflite --data $(DEMO_DATA) --threads 2
	$(BIN)/runner bench $(DEMO_OUT)/$(DEMO_MODEL).tflite --threads 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

# regenerates BENCHMARKS.md (LIMIT=2000 for a reduced CIFAR-10 run; PARTS="cifar zoo")
benchmark: $(STAMP)
	benchmarks/run_full.sh

clean:
	rm -rf $(VENV) out .pytest_cache
