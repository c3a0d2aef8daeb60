"""Reading tensors from files without ever running code stored in them.

``.pth``/``.pt``/``.bin`` files are pickles: a plain ``torch.load`` can execute anything the
file's author wrote. Every pickle here goes through ``torch.load(weights_only=True)``, whose
unpickler only rebuilds tensors and plain containers; the single extra class allowed is
``argparse.Namespace`` (an attribute bag, no code), because training scripts in the DETR family
(hustvl/YOLOS included) store their ``args`` next to the weights. ``.safetensors`` files hold no
code at all.
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CheckpointError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
SAFETENSORS_SUFFIX = ".safetensors"


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    return path


def sniff_format(path) -> str:
    """``"torch-zip"``, ``"pickle"`` or ``"safetensors"`` from a file's first bytes; anything else
    (an empty file, text, an image, random bytes) raises CheckpointError saying what it is not."""
    path = _existing(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"  # torch.save since 1.6
    if head[:1] == b"\x80" and 2 <= head[1] <= 5:
        return "pickle"  # legacy torch.save / pickle protocol 2-5
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if 2 <= header_len <= 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    raise CheckpointError(
        f"{path}: not a checkpoint: expected a PyTorch file (.pt/.pth/.bin: zip or pickle) or "
        f".safetensors, but it starts with {head[:12]!r}")


def _reason(err: Exception) -> str:
    """torch's first line only: its longer messages advise weights_only=False, which would run
    the file's code, and must never reach the user."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if "weights_only" in first:
        first = "unsupported content"
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def load_pickle(path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, with readable errors.

    Raises:
        CheckpointError: the file is missing, is not a torch file, or needs arbitrary code
            (a class or function outside tensors/containers) to be unpickled.
    """
    path = _existing(path)
    kind = sniff_format(path)
    if kind == "safetensors":
        raise CheckpointError(f"{path}: this is a safetensors file; give it a .safetensors name")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {_reason(e)}") from None
        # torch's message names the forbidden global (e.g. "posix.system"); keep that line.
        detail = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), "")
        raise CheckpointError(
            f"refusing to load {path}: it needs arbitrary code to be unpickled, which could run "
            f"anything on this machine (only tensors and plain containers are accepted, via "
            f"torch.load(weights_only=True)). {detail} If you trust the file, convert it yourself "
            f"to safetensors, or save only its state_dict."
        ) from None
    except Exception as e:  # torch raises KeyError/RuntimeError/EOFError/... on broken files
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint (truncated or damaged?): {_reason(e)}"
        ) from None


def load_safetensors(path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a ``.safetensors`` file, on the CPU."""
    from safetensors import SafetensorError, safe_open

    path = _existing(path)
    if sniff_format(path) != "safetensors":
        raise CheckpointError(f"{path}: not a safetensors file (it is a PyTorch zip or pickle file)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from None
    return tensors, metadata


def read_safetensors_metadata(path) -> dict[str, str]:
    """The header metadata only (cheap: no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    path = _existing(path)
    if sniff_format(path) != "safetensors":
        raise CheckpointError(f"{path}: not a safetensors file (it is a PyTorch zip or pickle file)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from None


def unwrap_state_dict(obj: object, path, keys=("model", "state_dict", "module")) -> dict[str, Tensor]:
    """The state dict inside a training checkpoint (``{"model": sd, "optimizer": ..., ...}``)
    or ``obj`` itself when it already is one; a DDP ``module.`` prefix is removed."""
    if isinstance(obj, dict):
        for key in keys:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds no state dict (expected a dict of tensors, "
                              f"or one under the key 'model')")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: entries that are not tensors: {not_tensors[:5]}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def read_state_dict(path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(state_dict, safetensors metadata or {})`` of a ``.safetensors`` or pickle file."""
    path = _existing(path)
    if sniff_format(path) == "safetensors":  # whatever its name says
        return load_safetensors(path)
    return unwrap_state_dict(load_pickle(path), path), {}



def load_strict(model: torch.nn.Module, state_dict: dict[str, Tensor], source) -> None:
    """``model.load_state_dict(state_dict)`` with every key and shape checked first.

    Raises:
        CheckpointError: naming ``source`` and listing missing keys, unexpected keys and shape
            mismatches (the first few of each, with counts), instead of torch's RuntimeError.
    """
    problems = key_mismatch(model.state_dict(), state_dict)
    if problems:
        raise CheckpointError(f"{source} does not fit the model; {problems}")
    not_float = [f"{k} ({v.dtype})" for k, v in state_dict.items() if not v.is_floating_point()]
    if not_float:
        raise CheckpointError(f"{source}: tensors that are not floating point, so not trained weights: "
                              f"{', '.join(not_float[:4])}{' ...' if len(not_float) > 4 else ''}")
    model.load_state_dict(state_dict, strict=True)


def key_mismatch(expected: dict[str, Tensor], found: dict[str, Tensor], more_shapes: list[str] = ()) -> str:
    """How ``found`` differs from ``expected`` in keys and shapes, the first few of each kind
    with counts (``"missing keys: a, b; unexpected keys: c; shape mismatches: ..."``); empty
    when they agree. ``more_shapes``: further shape problems the caller found."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(found[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in found and found[k].shape != v.shape] + list(more_shapes)
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:6]) + (f", ... ({len(items)} in all)" if len(items) > 6 else "")
            problems.append(f"{label}: {shown}")
    return "; ".join(problems)


def empty_model(config, model_class=None):
    """A ``model_class`` (default :class:`yolos.model.YOLOS`) with uninitialized storage, for a
    strict load that overwrites every tensor (drawing a random init first costs seconds for
    yolos-b and is thrown away)."""
    from ..model import YOLOS

    model_class = model_class or YOLOS
    with torch.device("meta"):
        model = model_class(config)
    if any(True for _ in model.buffers()):  # buffers may be non-persistent: initialize properly
        return model_class(config)
    return model.to_empty(device="cpu")


__all__ = ["load_pickle", "load_safetensors", "load_strict", "read_safetensors_metadata",
           "read_state_dict", "unwrap_state_dict", "empty_model"]
