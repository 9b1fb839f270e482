"""The code stays lint-clean (ruff, settings in pyproject.toml)."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_code_is_lint_clean():
    ruff = shutil.which("ruff") or os.path.join(os.path.dirname(sys.executable), "ruff")
    result = subprocess.run([ruff, "check", ROOT], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
