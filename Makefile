# Set up and run: `make demo` (the whole pipeline locally on synthetic data), `make test` (`make lint` first).
VENV ?= .venv
PYTHON ?= python3

.PHONY: setup demo lint test compile

setup: $(VENV)/.installed $(VENV)/mlflow/bin/mlflow

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e ".[dev]"
	touch $@

# MLflow's tracking server for the tests, in its own environment: the full MLflow wants other versions
# of pyarrow and starlette than FiftyOne (the project's environment has only its client).
$(VENV)/mlflow/bin/mlflow: $(VENV)/.installed
	$(PYTHON) -m venv $(VENV)/mlflow
	$(VENV)/mlflow/bin/pip install "mlflow==3.17.2"

demo: setup
	$(VENV)/bin/yolo-kfp run-local --demo --output-dir out/demo

# ruff, and pyright over the package (settings of both in pyproject.toml). Pyright comes from PyPI with its own
# Node.js (pyright[nodejs]); PYRIGHT_PYTHON_IGNORE_WARNINGS skips its check for a newer release on PyPI.
lint: setup
	$(VENV)/bin/ruff check .
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(VENV)/bin/pyright

test: lint
	$(VENV)/bin/pytest

compile: setup
	$(VENV)/bin/yolo-kfp compile --output pipeline/yolo_pipeline.yaml
