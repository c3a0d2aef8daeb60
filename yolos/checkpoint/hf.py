"""transformers' YOLOS format: config.json + model.safetensors (or pytorch_model.bin).

Pure state-dict <-> state-dict conversions (timm's ``checkpoint_filter_fn`` habit) plus the
config mapping; file reading lives in :mod:`yolos.checkpoint.loader`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor

from ..config import ModelConfig
from ..errors import CheckpointError
from ..files import atomic_path, atomic_write_text
from ..images import IMAGENET_MEAN, IMAGENET_STD
from ..model.variants import eval_sizes

# One table for both directions: (transformers name, ours). An entry ending in "." renames a
# prefix, any other a whole name; {i} is a block index.
_RENAMES = [
    ("vit.embeddings.cls_token", "cls_token"),
    ("vit.embeddings.detection_tokens", "det_tokens"),
    ("vit.embeddings.position_embeddings", "pos_embed"),
    ("vit.embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    ("vit.encoder.mid_position_embeddings", "mid_pos_embed"),
    ("vit.encoder.layer.{i}.layernorm_before.", "blocks.{i}.norm1."),
    ("vit.encoder.layer.{i}.layernorm_after.", "blocks.{i}.norm2."),
    ("vit.encoder.layer.{i}.attention.output.dense.", "blocks.{i}.attn.proj."),
    ("vit.encoder.layer.{i}.intermediate.dense.", "blocks.{i}.mlp.fc1."),
    ("vit.encoder.layer.{i}.output.dense.", "blocks.{i}.mlp.fc2."),
    ("vit.layernorm.", "norm."),
    ("class_labels_classifier.", "class_head."),
    ("bbox_predictor.", "box_head."),
]
# Read only: hub files say encoder.mid_position_embeddings; recent transformers renames it in memory.
_HF_ALIASES = [("vit.encoder.interpolation.mid_position_embeddings", "mid_pos_embed")]


def _rule(source: str, target: str) -> tuple[re.Pattern, str]:
    """A regex for names starting with (or equal to) ``source`` and its replacement ``target``."""
    pattern = "^" + re.escape(source).replace(r"\{i\}", r"(\d+)") + ("" if source.endswith(".") else "$")
    return re.compile(pattern), target.replace("{i}", r"\1")


_HF_TO_OURS = [_rule(hf, ours) for hf, ours in _RENAMES + _HF_ALIASES]
_OURS_TO_HF = [_rule(ours, hf) for hf, ours in _RENAMES]


def _rename(key: str, rules) -> str | None:
    for pattern, repl in rules:
        new, n = pattern.subn(repl, key)
        if n:
            return new
    return None


_QKV = re.compile(r"^vit\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")


def hf_to_ours(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename transformers keys to ours and fuse q, k, v into one ``qkv`` (rows q | k | v).

    Keys that match no rule are kept under their own name, so the strict load reports them.
    """
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        m = _QKV.match(key)
        if m:
            layer, part, kind = m.groups()
            qkv.setdefault((layer, kind), {})[part] = value
            continue
        out[_rename(key, _HF_TO_OURS) or key] = value
    for (layer, kind), parts in qkv.items():
        missing = {"query", "key", "value"} - set(parts)
        if missing:
            raise KeyError(f"layer {layer} has no attention {kind} for {sorted(missing)}")
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0
        )
    return out


def ours_to_hf(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`hf_to_ours`, with the mid embeddings under the hub-file name."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        m = re.match(r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", key)
        if m:
            layer, kind = m.groups()
            for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[f"vit.encoder.layer.{layer}.attention.attention.{part}.{kind}"] = chunk
            continue
        new = _rename(key, _OURS_TO_HF)
        if new is None:
            raise KeyError(f"no transformers name for parameter {key!r}")
        out[new] = value
    return out


def config_from_hf(hf: dict) -> ModelConfig:
    """ModelConfig from a transformers ``config.json`` dict (defaults as ``YolosConfig``)."""
    if not isinstance(hf, dict):
        raise ValueError(f"config.json must hold a JSON object, got {type(hf).__name__}")
    id2label = hf.get("id2label")
    if id2label is not None and not isinstance(id2label, dict):
        raise ValueError(f"id2label must map label ids to names, got {type(id2label).__name__}")
    if id2label:
        num_classes = len(id2label)
        try:
            class_names = {int(k): str(v) for k, v in id2label.items()}
        except (TypeError, ValueError):
            raise ValueError("id2label keys must be label ids 0..N-1") from None
        if sorted(class_names) != list(range(num_classes)):
            raise ValueError(f"id2label keys must be the label ids 0..{num_classes - 1}, got {sorted(class_names)[:8]}")
        if all(v == f"LABEL_{k}" for k, v in class_names.items()):
            class_names = None  # transformers' placeholder labels carry no names
    else:
        num_classes = int(hf.get("num_labels", 2))
        class_names = None
    image_size = hf.get("image_size", [512, 864])
    if isinstance(image_size, int):
        image_size = [image_size, image_size]
    if hf.get("hidden_act", "gelu") != "gelu" or not hf.get("qkv_bias", True):
        raise ValueError("only hidden_act='gelu' with qkv_bias=True is a YOLOS configuration")
    return ModelConfig(
        category_ids=hf.get("yolos_category_ids"),
        anchor_matching=hf.get("yolos_anchor_matching", 0.0),
        eval_size=hf.get("yolos_eval_size"),
        hidden_size=hf.get("hidden_size", 768),
        depth=hf.get("num_hidden_layers", 12),
        num_heads=hf.get("num_attention_heads", 12),
        mlp_dim=hf.get("intermediate_size", 3072),
        patch_size=hf.get("patch_size", 16),
        num_channels=hf.get("num_channels", 3),
        num_det_tokens=hf.get("num_detection_tokens", 100),
        num_classes=num_classes,
        image_size=tuple(image_size),
        mid_pos_embed=hf.get("use_mid_position_embeddings", True),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        class_names=class_names,
    )


def config_to_hf(config: ModelConfig) -> dict:
    """A transformers ``YolosConfig`` dict for ``config``: ``id2label``/``label2id`` from the class
    names (transformers' ids are the model's labels), the dataset's category id of each label
    under ``yolos_category_ids`` and the anchor matching its tokens learned under
    (``yolos_anchor_matching``); transformers keeps unknown keys, we read them back."""
    names = config.class_names or {}
    id2label = {str(i): names.get(i, f"LABEL_{i}") for i in range(config.num_classes)}
    extra = {} if config.category_ids is None else {"yolos_category_ids": list(config.category_ids)}
    if config.anchor_matching:
        extra["yolos_anchor_matching"] = config.anchor_matching
    if config.eval_size is not None:
        extra["yolos_eval_size"] = list(config.eval_size)
    return {**extra,
        "architectures": ["YolosForObjectDetection"],
        "model_type": "yolos",
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.mlp_dim,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": config.layer_norm_eps,
        "image_size": list(config.image_size),
        "patch_size": config.patch_size,
        "num_channels": config.num_channels,
        "qkv_bias": True,
        "num_detection_tokens": config.num_det_tokens,
        "use_mid_position_embeddings": config.mid_pos_embed,
        "auxiliary_loss": False,
        "id2label": id2label,
        "label2id": {v: int(k) for k, v in id2label.items()},
    }


def preprocessor_config(config: ModelConfig) -> dict:
    """transformers' ``YolosImageProcessor`` settings for a model: its evaluation size under
    transformers' protocol (:func:`yolos.model.eval_sizes`), ImageNet statistics, PIL bilinear."""
    short, long = eval_sizes(config, "transformers")
    return {
        "image_processor_type": "YolosImageProcessor",
        "format": "coco_detection",
        "do_resize": True, "size": {"shortest_edge": short, "longest_edge": long}, "resample": 2,
        "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD),
        "do_pad": True, "do_convert_annotations": True,
    }


HF_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "model.safetensors.index.json",
            "pytorch_model.bin")


def save_hf_directory(model, directory, overwrite: bool = False) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``preprocessor_config.json``: a directory
    that ``transformers.pipeline("object-detection", model=directory)`` and the Auto classes load
    as-is, and that gives the detections of ``yolos predict``. A folder that holds a model
    already (any of :data:`HF_FILES`) is refused unless ``overwrite``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory} exists and is not a folder")
    held = [name for name in HF_FILES if (directory / name).exists() or (directory / name).is_symlink()]
    if held and not overwrite:
        raise CheckpointError(f"{directory} holds a model already ({', '.join(held)}): pass overwrite=True to "
                              f"replace it, or choose another folder")
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in ours_to_hf(model.state_dict()).items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    atomic_write_text(directory / "config.json", json.dumps(config_to_hf(model.config), indent=2))
    atomic_write_text(directory / "preprocessor_config.json", json.dumps(preprocessor_config(model.config), indent=2))
    return directory


