# Set up and run: `make demo` (the whole pipeline locally on synthetic data), `make test`.
VENV ?= .venv
PYTHON ?= python3

.PHONY: setup demo test compile

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e ".[dev]"
	touch $@

demo: setup
	$(VENV)/bin/yolo-kfp run-local --demo --output-dir out/demo

test: setup
	$(VENV)/bin/pytest

compile: setup
	$(VENV)/bin/yolo-kfp compile --output pipeline/yolo_pipeline.yaml
