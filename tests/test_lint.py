"""ruff (in the test extra) finds nothing: pyflakes, pycodestyle, import order, bugbear and
pyupgrade rules as configured in pyproject.toml."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_is_clean():
    r = subprocess.run(["ruff", "check", "--no-cache", "yolos", "tests", "benchmarks"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:]
