"""docs/threat-model.md: every line names a test, and every test it names exists."""

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def table_rows(text: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith("|") and not re.fullmatch(r"\|[-|]+\|", line)]
    return [row for row in rows if not row.startswith("| what")]  # headers


def functions_of(path: str) -> set[str]:
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test")}


def test_every_line_of_the_threat_model_names_a_test_that_exists():
    with open(os.path.join(ROOT, "docs", "threat-model.md")) as f:
        rows = table_rows(f.read())
    assert len(rows) >= 10
    for row in rows:
        named = TEST.findall(row)
        assert named, f"names no test: {row}"
        for path, name in named:
            assert os.path.exists(os.path.join(ROOT, path)), f"{path} does not exist: {row}"
            assert name in functions_of(path), f"{path} has no {name}: {row}"
