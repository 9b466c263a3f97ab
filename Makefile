# The whole job in two commands:  `make demo`  and  `make test`.
# Both create and fill .venv when it is missing (Python 3.10+, no GPU needed).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NEMO_STAMP := $(VENV)/.nemo-stamp
OUT    ?= runs/demo
# Debian packages the tests use: espeak-ng speaks real test recordings, chromium checks the report.
SYSDEPS := espeak-ng chromium

export HF_HUB_DISABLE_TELEMETRY := 1
# The demo runs offline with the tiny twins; real presets need the hub and a GPU.
SG := HF_HUB_OFFLINE=1 $(VENV)/bin/stylegrpo

.PHONY: install sysdeps demo test lint format clean bench gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

# The tests also cover the optional NeMo ASR backend (a tiny .nemo model built offline).
$(NEMO_STAMP): $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev,nemo]"
	@touch $(NEMO_STAMP)

# System packages for the tests; installed with apt-get when missing and we are allowed to.
sysdeps:
	@missing=""; command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	 command -v chromium >/dev/null || missing="$$missing chromium"; \
	 if [ -n "$$missing" ]; then \
	   if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	     echo "installing$$missing (apt-get)"; \
	     apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	   else echo "note: missing$$missing; install them (Debian: apt-get install$$missing) or the tests that need them skip"; fi; \
	 fi

# The main job on the embedded defaults, offline, on CPU with the tiny twins of every model.
# Each step is a plain `stylegrpo` command: copy them to run your own data and the real models.
demo: install
	$(SG) styles --check
	$(SG) build --out $(OUT)/dataset --overwrite
	$(SG) train --config training/recipes/tiny.yaml --dataset_path $(OUT)/dataset --output-dir $(OUT)/train --overwrite
# (a make comment, not echoed) 4 texts per style (88 clips): the real DNSMOS judge costs ~0.4 s of CPU a clip;
# eval's default is 16
	$(SG) eval --preset tiny --adapter $(OUT)/train/adapter --dataset $(OUT)/dataset --training-dir $(OUT)/train --out $(OUT)/eval --n-per-style 4 --overwrite
	$(SG) say --preset tiny --adapter $(OUT)/train/adapter --style whispering "Hello there." -o $(OUT)/hello.wav --overwrite
	@echo "Report: $(abspath $(OUT))/eval/report.html  (tiny random models: plumbing, not quality)"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: install $(NEMO_STAMP) sysdeps lint
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q

# Speed and memory figures (printed, never asserted); CPU with the tiny twins unless a script says otherwise.
bench: install
	HF_HUB_OFFLINE=1 $(PY) bench/bench_build.py
	HF_HUB_OFFLINE=1 $(PY) bench/bench_scorers.py
	HF_HUB_OFFLINE=1 $(PY) bench/bench_grpo.py
	HF_HUB_OFFLINE=1 $(PY) bench/bench_codec.py

# The real GPU path on a CUDA machine without hub access: full-size random models, judges fp32 vs bf16, GRPO
# steps of the 24 GB recipes; figures in gpu_check.json (bench/gpu_check.sh --dry-run checks it on a CPU).
gpu-check: install
	bench/gpu_check.sh --out gpu_check.json

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
