"""Where the real COCO files that the tests and benchmarks read in place live (never copied)."""
from __future__ import annotations

import os
from pathlib import Path

ENV = "YOLOS_SHARED_DATA"


def shared_data_dir() -> Path:
    """``$YOLOS_SHARED_DATA`` when set, else ``shared/data`` beside the repository checkout."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return Path(__file__).resolve().parents[3] / "shared" / "data"
