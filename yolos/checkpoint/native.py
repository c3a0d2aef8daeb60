"""The project's own format: one ``.safetensors`` file whose metadata carries the ModelConfig.

Keys are our parameter names (see :class:`yolos.YOLOS`); the metadata key ``yolos_config`` holds
``ModelConfig.to_dict()`` as JSON, so the single file rebuilds the model with no other context.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config import ModelConfig
from ..errors import CheckpointError
from ..files import atomic_path
from ..model import YOLOS
from .safe_io import empty_model, load_safetensors, load_strict

CONFIG_KEY = "yolos_config"
FORMAT_VERSION = "1"


def save_native(model: YOLOS, path, overwrite: bool = True) -> Path:
    """Write ``model`` to ``path`` (a ``.safetensors`` file; parent folders are created),
    atomically. ``overwrite=False``: an existing file is refused (``YOLOS.save``'s default)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: the native format is a .safetensors file")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise CheckpointError(f"{path} exists: pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        "format": "pt",
        CONFIG_KEY: json.dumps(model.config.to_dict()),
        "yolos_format_version": FORMAT_VERSION,
    }
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def config_from_metadata(metadata: dict[str, str], path) -> ModelConfig:
    """The ModelConfig stored in a native file's metadata."""
    if CONFIG_KEY not in metadata:
        raise CheckpointError(
            f"{path} is a .safetensors file without yolos metadata (no {CONFIG_KEY!r} entry), "
            f"so the model shape is unknown. Accepted: a file written by YOLOS.save(), a "
            f"transformers directory (config.json + model.safetensors), or an original "
            f"hustvl/YOLOS .pth"
        )
    try:
        values = json.loads(metadata[CONFIG_KEY])
        if not isinstance(values, dict):
            raise ValueError(f"a JSON object is expected, got {type(values).__name__}")
        return ModelConfig.from_dict(values)
    except (ValueError, TypeError, RecursionError) as e:
        raise CheckpointError(f"{path}: invalid {CONFIG_KEY} metadata: {e}") from None


def load_native(path, device="cpu", *, model_class=YOLOS, **overrides) -> YOLOS:
    """Rebuild the model saved by :func:`save_native`, in eval mode on ``device``.

    ``overrides`` replace config fields (e.g. ``class_names=``); a field that changes a tensor
    shape makes the strict load fail with the mismatching names.
    """
    tensors, metadata = load_safetensors(path)
    config = config_from_metadata(metadata, path)
    if overrides:
        try:
            config = config.replace(**overrides)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: bad override {overrides}: {e}") from None
    model = empty_model(config, model_class)
    load_strict(model, tensors, path)
    return model.to(device).eval()


__all__ = ["save_native", "load_native", "config_from_metadata", "CONFIG_KEY"]


