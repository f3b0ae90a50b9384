# Two commands: `make demo` (train on the built-in synthetic data) and `make test`.
# Both create or reuse the virtual environment in $(VENV) from requirements.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO ?= runs/demo

.PHONY: venv demo test clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m train.synthetic $(DEMO)/data --classes 3 --per-class 80 --size 128
	$(PY) -m train --data $(DEMO)/data --no-pretrained --unfreeze all --epochs 8 --img-size 96 \
		--batch-size 16 --rotation 0 --color-jitter 0 --out $(DEMO)/model

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf runs .pytest_cache
