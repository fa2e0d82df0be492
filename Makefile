# LocoLab. `make demo` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
ARTIFACTS ?= artifacts
CONFIG ?= compute/configs/tiny-sd1.yaml

.PHONY: setup test demo sweep bench dashboard clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) -m compute generate --model tiny-sd1 --prompt "a beautiful house in the style of van gogh" \
		--target "a painting" --window-size 2 --seeds 0,1 --out $(ARTIFACTS)/demo/window-grid-$$(date +%Y%m%d-%H%M%S)

sweep: setup
	$(PY) -m compute sweep $(CONFIG) --artifacts $(ARTIFACTS)

bench: setup
	$(PY) -m compute.bench
	$(PY) -m compute.bench_edit
	$(PY) -m dashboard.bench

dashboard: setup
	$(PY) -m streamlit run dashboard/main.py -- --artifacts $(ARTIFACTS)

clean:
	rm -rf $(VENV)
