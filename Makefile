# Two commands on a fresh machine: `make train` and `make test`. Both install what is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SCALE  := $(VENV)/.installed-scale
# CPU machines get the CPU build of torch (small, found locally); GPU machines the default build.
TORCH  ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.4$(comma)<2.15,torch==2.13.0)
comma  := ,
export NO_ALBUMENTATIONS_UPDATE ?= 1
export PYTHONUNBUFFERED ?= 1

.PHONY: install install-scale train test test-full lint format clean dashboard bench bench-precision bench-sweep bench-quality app bench-app model shards bench-vetting bench-streaming

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The scale-out extras (submitit launchers, LitData shards) for the tests; `make train` does
# not need them. torch is named again so that no extra can swap the installed build for
# another; LitData goes in without its dependencies (see the `scale` extra in pyproject.toml).
LITDATA ?= litdata>=0.2.70,<0.3
install-scale: $(SCALE)

$(SCALE): $(STAMP)
	$(PY) -m pip install -q -e ".[dev,scale]" "torch==$$($(PY) -c 'import torch; print(torch.__version__)')"
	$(PY) -m pip install -q --no-deps "$(LITDATA)"
	touch $(SCALE)

# The quickstart run: at most 14 minutes. max_time is the run's budget, not a cut: the
# learning-rate schedule anneals over it, so a slower machine (fp32 without AVX512-BF16)
# trains fewer epochs but still ends at the schedule's floor; the run says how it ended.
train: install
	$(PY) src/train.py model=resunet trainer.max_time=00:00:14:00 $(ARGS)

test: install-scale
	WANDB_MODE=offline $(PY) -m pytest -q $(ARGS)

test-full: install-scale
	WANDB_MODE=offline $(PY) -m pytest -q -m "" $(ARGS)

lint: install
	$(PY) -m ruff check src tests scripts
	$(PY) -m ruff format --check src tests scripts

format: install
	$(PY) -m ruff format src tests scripts
	$(PY) -m ruff check --fix src tests scripts

# Speed of every backbone: FLOPs, training throughput vs a bare loop, efficiency, data pipeline,
# latency, memory; prints the tables and regenerates them in docs/benchmarks.md
bench: install
	$(PY) scripts/bench.py --readme docs/benchmarks.md $(ARGS)

# Does bf16 cost quality? The default run trained in bf16 and in fp32, PSNR@k of both (~12 min);
# regenerates its table in docs/benchmarks.md
bench-precision: install
	$(PY) scripts/bench_precision.py --readme docs/benchmarks.md $(ARGS)

# Does pruning pay? The same Optuna study with and without the median pruner (~25 min on 2
# cores); regenerates its table in docs/benchmarks.md
bench-sweep: install
	$(PY) scripts/bench_sweep.py --readme docs/benchmarks.md $(ARGS)

# Which backbone? Each one trained under experiment=backbone_budget on the research pool, PSNR@k
# on the ImageNet sample next to gray / idw / push_pull and the published SIGGRAPH'17 curve
# (~1.5 h on 2 cores; finished runs are reused); regenerates its table in docs/benchmarks.md
# and the plot
bench-quality: install
	$(PY) scripts/bench_quality.py --readme docs/benchmarks.md --plot docs/backbones_psnr_at_k.png $(ARGS)

# Scale-out (docs/scale-out.md): vetting speed on a generated folder of 20,000 256-px JPEGs
# (files/s per core, time to the first batch, a scan killed at 50 % and resumed; ~2 min)
bench-vetting: install
	$(PY) scripts/bench_vetting.py --readme docs/scale-out.md $(ARGS)

# LitData shards for data=streaming: ARGS="data=folder data.train_dir=... output_dir=..."
shards: install-scale
	$(PY) src/shard.py $(ARGS)

# Loader img/s per worker from shards vs from the folder at 128 and 256 px (train-pool)
bench-streaming: install-scale
	$(PY) scripts/bench_streaming.py --readme docs/scale-out.md $(ARGS)

# Rebuild the shipped model (models/hintcolor-v1/): train experiment=release on ~6,000 photos of
# ../shared/data (~1 h on 2 CPU cores with bf16), pack the weights, evaluate them on the
# ImageNet sample and rewrite the model card. CKPT=.../best.ckpt packs a finished run instead.
model: install
	$(PY) scripts/release_model.py $(if $(CKPT),--ckpt $(CKPT)) $(ARGS)

# The interactive page on http://127.0.0.1:7860 with the shipped model (or CKPT=path/to/best.ckpt)
app: install
	$(PY) src/app.py $(if $(CKPT),ckpt_path=$(CKPT)) $(ARGS)

# Does the page stay responsive? GET / and a click, idle and during a 24-megapixel download,
# against the real server (the shipped model, or CKPT=path/to/best.ckpt); regenerates the
# bench-app block in docs/benchmarks.md
bench-app: install
	$(PY) scripts/bench_app.py --readme docs/benchmarks.md $(if $(CKPT),--ckpt $(CKPT)) $(ARGS)

# optuna-dashboard on study STUDY, stored where conf/hparams_search/base.yaml says; 127.0.0.1 only
STUDY ?= hintcolor
dashboard: install
	$(PY) -m pip install -q "optuna-dashboard>=0.17,<1"
	url=$$($(PY) -m hydra_plugins.hintcolor_optuna_sweeper.storage $(STUDY)) && \
	$(VENV)/bin/optuna-dashboard --host 127.0.0.1 --port 8080 "$$url"

clean:
	rm -rf logs outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
