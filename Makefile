# LocoLab. `make demo` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
# Let Python and pytest cache bytecode (some hosts set PYTHONDONTWRITEBYTECODE): each test run imports ~170 modules,
# and collecting the fast tier takes 13 s without the caches, 8 s with them.
unexport PYTHONDONTWRITEBYTECODE
ARTIFACTS ?= artifacts
CONFIG ?= compute/configs/tiny-sd1.yaml

.PHONY: setup test test-heavy test-fast lint demo demo-compute sweep trace compare many-concepts reproduce bench dashboard \
	toyworld eval-toyworld toyworld-planted eval-toyworld-planted benchmark-localization clean

setup: $(VENV)/.installed

# The pinned dependencies first, then LocoLab itself (editable: `compute`, `contract` and `dashboard` import from
# this checkout, and the `locolab` command is on the venv's PATH).
$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Everything but the slow tier and the GPU tier (gpu tests need a CUDA device and real checkpoints; they skip
# elsewhere anyway), on both cores (pytest-xdist).
test: setup
	$(PY) -m pytest -q -n 2 -m "not heavy and not gpu" tests

# The slow tier: tests of 15 s or more each on 2 idle cores (the wheel, the S3 server, whole sweeps, jobs launched
# from pages, the planted benchmark); CI runs it after make test. loadgroup keeps a module marked xdist_group on one
# worker, so its costly module fixture (the S3 server and the sweeps of tests/test_s3.py) runs once.
test-heavy: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "heavy and not gpu" tests

# The inner loop: unit tests only (no subprocess end-to-end runs, no browser), 37 s on 2 idle cores.
test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not slow and not browser and not gpu" tests

lint: setup
	$(PY) -m ruff check .

# The embedded toy-world model: a LocoGen sweep over its four families, one LocoEdit with evaluation, then the
# dashboard on the results. Small models gain nothing from more threads (environment.md) but from more processes:
# the sweep runs as two single-threaded shards, then once more to print the whole run's summary. The edit keys the
# end-of-text/padding positions too and preserves the other backgrounds: the paper's subject-token edit does not
# remove the toy world's backgrounds (see `make compare`).
demo: demo-compute
	@echo "Results are in $(ARTIFACTS)/. Starting the dashboard (Ctrl-C to stop)."
	$(PY) -m streamlit run dashboard/main.py -- --artifacts $(ARTIFACTS)

demo-compute: setup
	set -e; OMP_NUM_THREADS=1 $(PY) -m compute sweep compute/configs/toyworld.yaml --artifacts $(ARTIFACTS) \
		--shard 1/2 --no-progress >/dev/null & other=$$!; \
	OMP_NUM_THREADS=1 $(PY) -m compute sweep compute/configs/toyworld.yaml --artifacts $(ARTIFACTS) --shard 0/2; \
	wait $$other
	OMP_NUM_THREADS=1 $(PY) -m compute sweep compute/configs/toyworld.yaml --artifacts $(ARTIFACTS) --no-progress
	OMP_NUM_THREADS=1 $(PY) -m compute edit --model toyworld --family style --concept stripes \
		--from-run compute/configs/toyworld.yaml --positions subject+padding --preserve-others \
		--eval --seeds 0,1 --unrelated 12 --artifacts $(ARTIFACTS)

sweep: setup
	$(PY) -m compute sweep $(CONFIG) --artifacts $(ARTIFACTS)

trace: setup
	$(PY) -m compute trace $(CONFIG) --artifacts $(ARTIFACTS)

# The paper's comparison for one concept on one model: LocoGen and causal tracing maps, then LocoEdit (on the
# minimal localizing window), all layers, neurons and DiffQuickFix (the published recipe and ours), and the grid
# localization x editor: UCE and TIME each on the localized window and on every layer; each evaluated, then
# every method's evaluation battery in one table (compute/edit/battery_report.py, its layers column). Defaults: the toy world on a CPU
# (3 min of CPU time on one thread). A real model: make compare COMPARE_CONFIG=compute/configs/style-sd-1.4.yaml \
#     COMPARE_MODEL=sd-1.4 FAMILY=style CONCEPT="van gogh"  (a GPU and the checkpoint; see README).
COMPARE_CONFIG ?= compute/configs/toyworld-style.yaml
COMPARE_MODEL ?= toyworld
FAMILY ?= style
CONCEPT ?= checkers
EDIT_OPTS ?=
EVAL_OPTS ?= --seeds 0,1 --unrelated 12
compare: setup
	OMP_NUM_THREADS=1 $(PY) -m compute sweep $(COMPARE_CONFIG) --artifacts $(ARTIFACTS)
	OMP_NUM_THREADS=1 $(PY) -m compute trace $(COMPARE_CONFIG) --artifacts $(ARTIFACTS)
	set -e; for method in loco all-layers neuron diffquickfix diffquickfix-family uce@window uce time@window time; do \
		case $$method in loco|neuron|*@window) where="--from-run $(COMPARE_CONFIG)";; *) where="";; esac; \
		OMP_NUM_THREADS=1 $(PY) -m compute edit --model $(COMPARE_MODEL) --family $(FAMILY) --concept "$(CONCEPT)" \
			--method $${method%@window} $$where $(EDIT_OPTS) --eval $(EVAL_OPTS) --artifacts $(ARTIFACTS); \
	done
	$(PY) -m compute.edit.battery_report --model $(COMPARE_MODEL) --family $(FAMILY) --concept "$(CONCEPT)" \
		--artifacts $(ARTIFACTS)
	@echo "Compare the maps and edits in the dashboard (its Methods compared page: this grid): make dashboard ARTIFACTS=$(ARTIFACTS)"

# Efficacy and preservation as the number of concepts in one edit grows: the first 1, 2, 4, ... concepts of the
# family (all of them last) in one LocoEdit solve each, the family's other concepts preserved, each evaluated with the
# battery, then one table (locolab many-concepts). Default: the toy world's three backgrounds on its localized layer
# 12 (11 min on a loaded 2-core machine). A real model (a GPU and the checkpoint; 50 names need --concepts, the
# catalog's style family holds 8): make many-concepts MANY_MODEL=sd-1.4 MANY_FAMILY=style \
#     MANY_OPTS="--from-run compute/configs/style-sd-1.4.yaml --preserve-others --concepts A,B,... --counts 1,5,10,50"
MANY_MODEL ?= toyworld
MANY_FAMILY ?= style
MANY_OPTS ?= --layers 12 --positions subject+padding --preserve-others
many-concepts: setup
	OMP_NUM_THREADS=1 $(PY) -m compute many-concepts --model $(MANY_MODEL) --family $(MANY_FAMILY) $(MANY_OPTS) \
		$(EVAL_OPTS) --artifacts $(ARTIFACTS)

# The paper's LocoGen studies (style, objects, facts) on one registered model with the paper's settings, into one root,
# then the table to compare with the paper. A real model needs a GPU and its checkpoint (README); a built-in tiny
# model (MODEL=tiny-sd1) stands in for the real one of its architecture on a CPU in minutes. Plan only:
# make reproduce MODEL=sd-1.4 REPRODUCE_OPTS=--dry-run
MODEL ?= tiny-sd1
REPRODUCE_OPTS ?=
reproduce: setup
	$(PY) -m compute reproduce --model $(MODEL) --artifacts $(ARTIFACTS) $(REPRODUCE_OPTS)

bench: setup
	$(PY) -m bench.generation
	$(PY) -m bench.edit_solve
	$(PY) -m bench.dashboard_queries --demo $(ARTIFACTS)
	$(PY) -m bench.dashboard_browser $(ARTIFACTS)

dashboard: setup
	$(PY) -m streamlit run dashboard/main.py -- --artifacts $(ARTIFACTS)

# Retrain the toy world from scratch (mini-CLIP, mini-VAE, mini-UNet) into compute/checkpoints/.
toyworld: setup
	OMP_NUM_THREADS=1 $(PY) -m compute.toyworld train --threads 1

eval-toyworld: setup
	OMP_NUM_THREADS=1 $(PY) -m compute.toyworld eval --json $(ARTIFACTS)/toyworld/eval.json \
		--grid $(ARTIFACTS)/toyworld/grid.png

# The planted toy worlds (compute/toyworld/train_planted.py): the toy world's UNet fine-tuned three times, plans a
# and b (4000 steps each) and the control (every family readable everywhere, 2000 steps), one single-threaded process
# each, a and the control one after the other beside b, into compute/checkpoints/toyworld-planted-{a,b,control}/:
# 44 min on 2 idle cores, the shipped safetensors bit for bit.
toyworld-planted: setup
	set -e; OMP_NUM_THREADS=1 $(PY) -m compute.toyworld.train_planted --variant b >/dev/null & other=$$!; \
	OMP_NUM_THREADS=1 $(PY) -m compute.toyworld.train_planted --variant a; \
	OMP_NUM_THREADS=1 $(PY) -m compute.toyworld.train_planted --variant control; wait $$other

# Their gates: shape, colour and background drawn right by the exact pixel detectors (>= 95%), eight seeds per
# combination: 512 combination and 32 entity images per model (with two seeds, 8 entity images cannot tell 95% from 88%).
eval-toyworld-planted: setup
	set -e; for v in a b control; do OMP_NUM_THREADS=1 $(PY) -m compute.toyworld eval --model toyworld-planted-$$v \
		--seeds 0,1,2,3,4,5,6,7 --json $(ARTIFACTS)/toyworld/eval-planted-$$v.json; done

# Each localization method scored against the planted plans: two shards on the two cores, then the table.
BENCHMARK_OPTS ?=
benchmark-localization: setup
	set -e; OMP_NUM_THREADS=1 $(PY) -m compute benchmark-localization --artifacts $(ARTIFACTS) $(BENCHMARK_OPTS) \
		--shard 1/2 --no-progress >/dev/null & other=$$!; \
	OMP_NUM_THREADS=1 $(PY) -m compute benchmark-localization --artifacts $(ARTIFACTS) $(BENCHMARK_OPTS) \
		--shard 0/2 --no-progress; wait $$other
	OMP_NUM_THREADS=1 $(PY) -m compute benchmark-localization --artifacts $(ARTIFACTS) $(BENCHMARK_OPTS) --no-progress

clean:
	rm -rf $(VENV)
