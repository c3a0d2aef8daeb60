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

_HF_TO_OURS = [
    (r"^vit\.embeddings\.cls_token$", "cls_token"),
    (r"^vit\.embeddings\.detection_tokens$", "det_tokens"),
    (r"^vit\.embeddings\.position_embeddings$", "pos_embed"),
    (r"^vit\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    # Hub files say encoder.mid_position_embeddings; recent transformers renames it in memory.
    (r"^vit\.encoder\.(interpolation\.)?mid_position_embeddings$", "mid_pos_embed"),
    (r"^vit\.encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^vit\.encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^vit\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^vit\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^vit\.encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^vit\.layernorm\.", "norm."),
    (r"^class_labels_classifier\.", "class_head."),
    (r"^bbox_predictor\.", "box_head."),
]
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
        for pattern, repl in _HF_TO_OURS:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            out[key] = value
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
    simple = {
        "cls_token": "vit.embeddings.cls_token",
        "det_tokens": "vit.embeddings.detection_tokens",
        "pos_embed": "vit.embeddings.position_embeddings",
        "mid_pos_embed": "vit.encoder.mid_position_embeddings",
    }
    prefixes = [
        (r"^patch_embed\.proj\.", "vit.embeddings.patch_embeddings.projection."),
        (r"^blocks\.(\d+)\.norm1\.", r"vit.encoder.layer.\1.layernorm_before."),
        (r"^blocks\.(\d+)\.norm2\.", r"vit.encoder.layer.\1.layernorm_after."),
        (r"^blocks\.(\d+)\.attn\.proj\.", r"vit.encoder.layer.\1.attention.output.dense."),
        (r"^blocks\.(\d+)\.mlp\.fc1\.", r"vit.encoder.layer.\1.intermediate.dense."),
        (r"^blocks\.(\d+)\.mlp\.fc2\.", r"vit.encoder.layer.\1.output.dense."),
        (r"^norm\.", "vit.layernorm."),
        (r"^class_head\.", "class_labels_classifier."),
        (r"^box_head\.", "bbox_predictor."),
    ]
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key in simple:
            out[simple[key]] = value
            continue
        m = re.match(r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", key)
        if m:
            layer, kind = m.groups()
            for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[f"vit.encoder.layer.{layer}.attention.attention.{part}.{kind}"] = chunk
            continue
        for pattern, repl in prefixes:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise KeyError(f"no transformers name for parameter {key!r}")
    return out


def config_from_hf(hf: dict) -> ModelConfig:
    """ModelConfig from a transformers ``config.json`` dict (defaults as ``YolosConfig``)."""
    id2label = hf.get("id2label")
    if id2label:
        num_classes = len(id2label)
        class_names = {int(k): v for k, v in id2label.items()}
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
    """A transformers ``YolosConfig`` dict for ``config``."""
    names = config.class_names or {}
    id2label = {str(i): names.get(i, f"LABEL_{i}") for i in range(config.num_classes)}
    return {
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


def save_hf_directory(model, directory) -> Path:
    """Write ``config.json`` and ``model.safetensors`` that transformers loads as-is."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in ours_to_hf(model.state_dict()).items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config_to_hf(model.config), indent=2))
    return directory
