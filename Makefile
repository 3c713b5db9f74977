# unio developer commands. Every target installs into .venv first (torch before the project, so pip
# never pulls a multi-GB CUDA build when a CPU wheel is wanted). Override TORCH_SPEC on GPU machines,
# e.g. `make install TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.unio-installed
PYTEST := $(BIN)/python -m pytest

.PHONY: install test test-slow test-all lint format bench bench-tokenizers demo train clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: install  ## fast tests (no `slow` marker); < 2 minutes on 2 CPU cores
	$(PYTEST) -m "not slow" -q -n 2 --durations=10

test-slow: install  ## long tests: real-data integration and training runs
	$(PYTEST) -m slow -q

test-all: install
	$(PYTEST) -q

lint: install
	$(BIN)/ruff check unio scripts tests
	$(BIN)/ruff format --check unio scripts tests

format: install
	$(BIN)/ruff check --fix unio scripts tests
	$(BIN)/ruff format unio scripts tests

bench: install  ## benchmarks that print the numbers quoted in docs/benchmarks.md
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python scripts/bench_model.py
	$(BIN)/python scripts/bench_data.py
	$(BIN)/python scripts/bench_train.py

bench-tokenizers: install  ## issue-3 acceptance runs on ../shared/data (about 25 CPU-minutes in all)
	for e in tokenizer_image_f4_coco64 tokenizer_image_f8_coco64 tokenizer_mask_coco64 tokenizer_audio_fsdd; do \
		$(BIN)/unio-train-tokenizer experiment=$$e train.progress_bar=false || exit 1; done

demo: install  ## the end-to-end demo on built-in data: format, training, held-out metrics, Pipeline (no downloads, CPU)
	$(BIN)/unio-demo

train: install  ## the main job on the embedded default: tiny model, built-in shapes world, CPU, a few minutes
	$(BIN)/unio-train trainer.max_steps=200 run_dir=runs/quickstart

clean:
	rm -rf outputs multirun wandb runs .pytest_cache .ruff_cache .hypothesis
