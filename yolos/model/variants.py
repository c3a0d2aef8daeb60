"""The variant table: every released YOLOS shape plus ``micro`` for tests and demos.

One row per variant: the network shape (a :class:`ModelConfig`) and its recipe (hub id,
evaluation size, training scales, learning rate, batch size).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig
from .detector import YOLOS


@dataclass(frozen=True)
class Variant:
    config: ModelConfig
    hub_id: str | None
    eval_short_side: int  # evaluation resize (shortest edge)
    eval_long_side_orig: int  # the original repository's evaluation long-side cap
    train_scales: tuple[int, ...]  # multi-scale training short sides
    train_max_size: int
    lr: float  # per the README commands (total batch = 8 GPUs x batch_size)
    batch_size: int
    imagenet_init: str  # what the paper initializes the backbone from


_TINY_SCALES = tuple(range(256, 609, 16))
_SMALL_SCALES = tuple(range(480, 801, 16))


def _cfg(name, d, depth, heads, mlp, image_size, mid, **kw) -> ModelConfig:
    return ModelConfig(
        hidden_size=d, depth=depth, num_heads=heads, mlp_dim=mlp, image_size=image_size,
        mid_pos_embed=mid, variant=name, **kw,
    )


VARIANTS: dict[str, Variant] = {
    "yolos-ti": Variant(
        _cfg("yolos-ti", 192, 12, 3, 768, (800, 1333), False), "hustvl/yolos-tiny",
        512, 853, _TINY_SCALES, 608 * 1333 // 800, 5e-5, 2, "DeiT-Ti 224",
    ),
    "yolos-s": Variant(
        _cfg("yolos-s", 384, 12, 6, 1536, (512, 864), True), "hustvl/yolos-small",
        800, 1333, _SMALL_SCALES, 1333, 2.5e-5, 1, "DeiT-S 224 (200 epochs)",
    ),
    "yolos-s-300": Variant(
        _cfg("yolos-s-300", 384, 12, 6, 1536, (512, 864), True), "hustvl/yolos-small-300",
        800, 1333, _SMALL_SCALES, 1333, 2.5e-5, 1, "DeiT-S 224 (300 epochs)",
    ),
    "yolos-s-dwr": Variant(
        _cfg("yolos-s-dwr", 330, 14, 6, 1320, (512, 864), True), "hustvl/yolos-small-dwr",
        800, 1333, _SMALL_SCALES, 1333, 2.5e-5, 1, "DeiT-S dWr 240",
    ),
    "yolos-b": Variant(
        _cfg("yolos-b", 768, 12, 12, 3072, (800, 1344), True), "hustvl/yolos-base",
        800, 1333, _SMALL_SCALES, 1333, 2.5e-5, 1, "DeiT-B distilled 384",
    ),
    # Small enough to train on a 2-core CPU in minutes: tests, demos, the bundled default.
    "micro": Variant(
        _cfg("micro", 128, 4, 4, 512, (128, 128), False, num_det_tokens=10, num_classes=3),
        None, 128, 128, (96, 112, 128, 144, 160), 160, 3e-4, 32, "none (from scratch)",
    ),
}

# Accept transformers' hub names and the original repo's backbone names as aliases.
ALIASES = {
    "yolos-tiny": "yolos-ti", "tiny": "yolos-ti", "yolos-small": "yolos-s", "small": "yolos-s",
    "yolos-small-300": "yolos-s-300", "yolos-small-dwr": "yolos-s-dwr", "small_dwr": "yolos-s-dwr",
    "yolos-base": "yolos-b", "base": "yolos-b",
}


def get_variant(name: str) -> Variant:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[key]


def create_model(name: str = "micro", **overrides) -> YOLOS:
    """A randomly initialized model of a named variant; ``overrides`` change config fields
    (e.g. ``num_classes=5``, ``num_det_tokens=20``)."""
    config = get_variant(name).config
    if overrides:
        config = config.replace(**overrides)
    return YOLOS(config)


def infer_variant_name(config: ModelConfig) -> str | None:
    """The variant whose shape matches ``config`` (ignoring classes), or None."""
    for name, v in VARIANTS.items():
        c = v.config
        if (c.hidden_size, c.depth, c.num_heads, c.mlp_dim, c.image_size, c.mid_pos_embed,
                c.patch_size) == (config.hidden_size, config.depth, config.num_heads,
                                  config.mlp_dim, config.image_size, config.mid_pos_embed,
                                  config.patch_size):
            return name
    return None


# How a model's evaluation input is sized. "transformers": the hub preprocessor configs, which
# cap the long side at 1333 for every released variant (Ti 512/1333, S/B 800/1333); what the
# transformers pipeline feeds the model, so predict, serve, export, info, flops and benchmark use
# it. "paper": the original repository's evaluation (Ti 512/853, S/B 800/1333), under which the
# paper's AP was measured, so val, analyze and the evaluation during training use it.
EVAL_PROTOCOLS = ("transformers", "paper")


def eval_sizes(config: ModelConfig | str, protocol: str = "transformers") -> tuple[int, int]:
    """``(short_side, long_side)`` a model is evaluated at under ``protocol``; the one place
    that decides it. ``config``: a ModelConfig (the size training chose for it, ``eval_size``;
    else its variant by name, else by shape) or a variant name. Project-only variants
    (``micro``) have one size, 128/128, under both. A shape of no variant gets transformers'
    default 800/1333, or under "paper" the size its position embeddings were built for."""
    if protocol not in EVAL_PROTOCOLS:
        raise ValueError(f"protocol: expected one of {', '.join(EVAL_PROTOCOLS)}, got {protocol!r}")
    if isinstance(config, str):
        name = config
    elif config.eval_size is not None:
        return config.eval_size
    else:
        name = config.variant if config.variant and config.variant.lower() in {**VARIANTS, **ALIASES} \
            else infer_variant_name(config)
    if name is None:
        return (min(config.image_size), max(config.image_size)) if protocol == "paper" else (800, 1333)
    v = get_variant(name)
    if protocol == "paper" or v.hub_id is None:
        return v.eval_short_side, v.eval_long_side_orig
    return v.eval_short_side, 1333


def input_size(config: ModelConfig | str, protocol: str = "transformers", short_side: int | None = None,
               long_side: int | None = None) -> tuple[int, int]:
    """``(short_side, long_side)`` an image is resized to: the ones given, else the model's
    :func:`eval_sizes` under ``protocol``. Every command and the export API size inputs with it."""
    default_short, default_long = eval_sizes(config, protocol)
    short = short_side or default_short
    return short, long_side or max(default_long, short)
