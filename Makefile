# Two commands: `make demo` (train on the built-in synthetic data, then serve it in the app) and `make test`
# (ruff, the import-layer contracts in pyproject.toml, then pytest).
# Both create or reuse the virtual environment in $(VENV) from requirements.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO ?= runs/demo
DEMO_PORT ?= 7860
# pytest workers: one per core of the 2-core machine CI runs on (each worker runs torch on one thread)
TEST_WORKERS ?= 2

.PHONY: venv demo test clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m train.synthetic $(DEMO)/data --classes 3 --per-class 80 --size 128
# 128 px, not less: ResNet50's layer4 is then a 4x4 grid, fine enough for the heatmaps to find the
# evidence (held-out pointing game: 97-98% at 128 px, 33-43% at 96 px with its 3x3 grid).
	$(PY) -m train --data $(DEMO)/data --no-pretrained --unfreeze all --epochs 8 --img-size 128 \
		--batch-size 16 --rotation 0 --color-jitter 0 --out $(DEMO)/model
# A few sample images travel with the model (published as examples/, shown in the app's Examples tab), each
# with its YOLO box file: the app draws that box on the heatmaps and says whether they point into it.
	mkdir -p $(DEMO)/model/examples
	for d in $(DEMO)/data/*/; do f="$$(ls "$$d"*.png | tail -n 1)"; cp "$$f" "$${f%.png}.txt" $(DEMO)/model/examples/; done
# Last: serve the model just trained (Ctrl+C stops it); Gradio prints the URL.
	$(PY) -m space --model $(DEMO)/model --port $(DEMO_PORT)

test: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests

clean:
	rm -rf runs .pytest_cache
