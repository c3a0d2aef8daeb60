"""The shape the code keeps (DEVELOPING.md): functions that fit on a screen, commands that are
parsers over library calls, and no stale file named in the code's own words."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "yolos"
MAX_FUNCTION_LINES = 70
MAX_COMMAND_LINES = 140  # a parser and one call: the jobs live in the library


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_commands_are_parsers_over_library_calls():
    big = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "cli").glob("*.py")}
    assert all(n <= MAX_COMMAND_LINES for n in big.values()), big


def test_files_named_in_the_code_exist():
    """Paths in docstrings and comments (``docs/training.md``, ``benchmarks/finetune.py``, ...)."""
    pattern = re.compile(r"\b((?:docs|benchmarks|tests)/[\w./-]+\.(?:md|py|json|jsonl))")
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in pattern.findall(path.read_text(encoding="utf-8")):
            if not (ROOT / name).exists():
                missing.append(f"{path.relative_to(ROOT)} names {name}")
    assert not missing, missing
