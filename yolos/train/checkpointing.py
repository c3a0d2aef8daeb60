"""Training-state checkpoints: everything needed to continue a run bit-for-bit.

The file holds only tensors, plain containers, strings and numbers, so it loads with
``torch.load(weights_only=True)`` (no unpickling of arbitrary objects). It is written to a
temporary file in the same directory and moved into place with ``os.replace``, which is atomic
on POSIX: a run killed mid-write leaves the previous checkpoint intact.

Layout::

    {"format": "yolos-train-state", "version": 1,
     "model": state_dict, "optimizer": state_dict, "scheduler": dict,
     "epoch": int,            # epoch to resume in
     "step_in_epoch": int,    # batches of that epoch already done (0 = start of the epoch)
     "global_step": int,      # optimizer steps done so far
     "best_ap": float, "config": dict (TrainConfig), "model_config": dict (ModelConfig),
     "rng": {"python": [...], "numpy": {...}, "torch": ByteTensor, "cuda": [ByteTensor...]},
     "ema": {"weights": state_dict, "updates": int, ...} (only with --ema),
     "extra_tokens": state_dict (only with --det-groups / --denoising / --dense-aux: training-only parts),
     "stale_evals": int}       # evaluations since the best AP (--patience)
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..distributed import unwrap
from ..errors import CheckpointError
from ..files import atomic_path

FORMAT = "yolos-train-state"


# --------------------------------------------------------------------------- RNG states
def rng_state() -> dict:
    """Python, numpy and torch (CPU + CUDA) generator states as tensors and plain values."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- files
def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (:func:`yolos.files.atomic_path`)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_training_state(path, *, model, optimizer, scheduler, epoch: int, step_in_epoch: int,
                        global_step: int, best_ap: float, config: dict, ema=None, stale_evals: int = 0,
                        extra_tokens=None) -> None:
    """Write the training state (see module docstring); call on rank 0 only."""
    net = unwrap(model)
    state = {
        "format": FORMAT,
        "version": 1,
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": int(epoch),
        "step_in_epoch": int(step_in_epoch),
        "global_step": int(global_step),
        "best_ap": float(best_ap),
        "config": config,
        "model_config": net.config.to_dict(),
        "rng": rng_state(),
        "stale_evals": int(stale_evals),
    }
    if ema is not None:
        state["ema"] = ema.state_dict()
    if extra_tokens is not None:
        state["extra_tokens"] = {k: v.detach().cpu() for k, v in extra_tokens.state_dict().items()}
    atomic_torch_save(state, path)


def load_training_state(path) -> dict:
    """Read a training state safely (``weights_only=True``) and check its format."""
    from ..checkpoint.safe_io import load_pickle

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no training-state checkpoint to resume from")
    last = path.parent / "last.safetensors"
    advice = (f"start a new run from the last saved weights instead: yolos train --init {last} "
              f"(with your --data and a new --out)" if last.is_file() else
              "start the run again without --resume")
    try:
        state = load_pickle(path)
    except CheckpointError as err:  # empty, truncated, random or unsafe content
        raise CheckpointError(f"{path}: the training state cannot be read ({err}); {advice}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a yolos training-state checkpoint (field 'format'); {advice}")
    return state
