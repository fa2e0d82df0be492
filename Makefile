# LocoLab. `make demo` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
ARTIFACTS ?= artifacts
CONFIG ?= compute/configs/tiny-sd1.yaml

.PHONY: setup test demo sweep bench dashboard toyworld eval-toyworld clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

test: setup
	$(PY) -m pytest -q tests

# The embedded toy-world model: a LocoGen sweep over its four families, one LocoEdit with evaluation, then the
# dashboard on the results. One thread per process: small models gain nothing from more (environment.md).
demo: setup
	OMP_NUM_THREADS=1 $(PY) -m compute sweep compute/configs/toyworld.yaml --artifacts $(ARTIFACTS)
	OMP_NUM_THREADS=1 $(PY) -m compute edit --model toyworld --family style --concept stripes \
		--target "an object on plain" --from-run compute/configs/toyworld.yaml --prompt stripes \
		--prompt "a red square on stripes" --prompt "a blue circle on stripes" --prompt "a green cross on stripes" \
		--eval --seeds 0,1 --unrelated 8 --artifacts $(ARTIFACTS)
	@echo "Results are in $(ARTIFACTS)/. Starting the dashboard (Ctrl-C to stop)."
	$(PY) -m streamlit run dashboard/main.py -- --artifacts $(ARTIFACTS)

sweep: setup
	$(PY) -m compute sweep $(CONFIG) --artifacts $(ARTIFACTS)

bench: setup
	$(PY) -m compute.bench
	$(PY) -m compute.bench_edit
	$(PY) -m dashboard.bench

dashboard: setup
	$(PY) -m streamlit run dashboard/main.py -- --artifacts $(ARTIFACTS)

# Retrain the toy world from scratch (mini-CLIP, mini-VAE, mini-UNet) into compute/models/.
toyworld: setup
	OMP_NUM_THREADS=1 $(PY) -m compute.toyworld train --threads 1

eval-toyworld: setup
	OMP_NUM_THREADS=1 $(PY) -m compute.toyworld eval --json $(ARTIFACTS)/toyworld/eval.json \
		--grid $(ARTIFACTS)/toyworld/grid.png

clean:
	rm -rf $(VENV)
