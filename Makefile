# genlab: `make demo` and `make test` each set up .venv/ (CPU PyTorch) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.genlab-installed
DEMO   := runs/demo

.PHONY: setup demo test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# the CPU build of torch first, pinned: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	# GPT-2's BPE ranks ship inside this sdist; --no-deps because genlab needs only that file
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps openai-whisper==20250625
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/genlab train vae-mnist --out $(DEMO)
	$(BIN)/genlab sample $(DEMO) --n 64 --seed 0 --out $(DEMO)/samples.png
	$(BIN)/genlab sample $(DEMO) --n 1000 --seed 0 --out $(DEMO)/samples.npz
	$(BIN)/genlab reconstruct $(DEMO) --n 32 --out $(DEMO)/reconstructions.png
	$(BIN)/genlab interpolate $(DEMO) --steps 10 --out $(DEMO)/interpolations.png
	@echo
	@echo "Demo outputs are in $(DEMO)/:"
	@echo "  samples.png  samples.npz  reconstructions.png  interpolations.png  loss.png  metrics.jsonl  model.safetensors"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# the peers (pythae, diffusers) live in their own venv so they never change the main one
BENCH := .venv-bench
$(BENCH)/.installed: pyproject.toml
	test -x $(BENCH)/bin/python || $(PYTHON) -m venv $(BENCH)
	$(BENCH)/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BENCH)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BENCH)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps openai-whisper==20250625
	touch $@

bench: $(BENCH)/.installed
	$(BENCH)/bin/python benchmarks/vae.py
	$(BENCH)/bin/python benchmarks/diffusion.py
	$(BENCH)/bin/python benchmarks/gpt.py
	$(BENCH)/bin/python benchmarks/metrics.py

clean:
	rm -rf $(VENV) $(BENCH) runs .pytest_cache .ruff_cache *.egg-info
