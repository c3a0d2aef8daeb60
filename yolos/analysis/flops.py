"""Parameters and FLOPs counted the way the YOLOS paper counts them.

Convention (DETR / fvcore, the one the paper follows): **one multiply-add is one FLOP**, and only
the matrix products count:

* ``f(Lin.)``: every linear projection -- the 16x16 patch-stem convolution (a linear map per
  patch), qkv / output projection / the two MLP layers of each block, and the heads;
* ``f(Att.)``: the two attention products ``Q K^T`` and ``A V`` (``S^2 * D`` each per layer).

LayerNorm, GELU, softmax, the residual additions and the bicubic resampling of the position
embeddings are not counted (fvcore has no handle for the element-wise ones; its LayerNorm handle
adds ``5 * S * D`` per norm, under 0.5 % for YOLOS-Ti and less for wider models).

Per image of padded size ``H x W`` with patch ``p``, ``N = (H // p) * (W // p)`` patches,
``S = 1 + N + T`` tokens, width ``D``, MLP width ``M``, depth ``L``, ``C + 1`` class logits::

    stem   = N * D * 3 * p * p
    blocks = L * S * (4 * D^2 + 2 * D * M)           # qkv 3D^2, proj D^2, fc1 + fc2 2DM
    heads  = T * (2 * D^2 + D * (C + 1)) + T * (2 * D^2 + 4 * D)
    f(Att.) = L * 2 * S^2 * D

The paper's ``f(Lin.)/f(Att.)`` column is *not* this measured ratio but its complexity model
(``f(Lin.) = 12 d w^2 N``, ``f(Att.) = 2 d w N^2`` over patch tokens only, ratio ``6 w / N``):
:func:`model_ratio`. See docs/analysis.md for how the COCO column follows from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import ModelConfig
from ..errors import DatasetError
from ..images import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class FlopCount:
    """FLOPs (multiply-adds) of one forward pass, split as in the paper, and the parameters."""

    linear: float
    attention: float
    params: int
    tokens: int  # sequence length S
    # measured parts of ``linear`` kept for reporting
    stem: float = 0.0
    heads: float = 0.0

    @property
    def total(self) -> float:
        return self.linear + self.attention

    @property
    def ratio(self) -> float:
        """Measured f(Lin.)/f(Att.)."""
        return self.linear / self.attention


def _block_params(d: int, m: int) -> int:
    # qkv (3D^2 + 3D), proj (D^2 + D), fc1 (DM + M), fc2 (MD + D), two LayerNorms (4D)
    return 4 * d * d + 2 * d * m + 4 * d + m + d + 4 * d


def detector_params(config: ModelConfig) -> int:
    """Parameter count of :class:`yolos.YOLOS` for ``config`` (position embeddings included,
    at their stored size; the counts do not depend on the input size)."""
    c, d = config, config.hidden_size
    s_stored = c.seq_len
    n = c.patch_size * c.patch_size * c.num_channels * d + d  # stem conv
    n += d + c.num_det_tokens * d + s_stored * d  # cls, det tokens, pos embed
    if c.mid_pos_embed:
        n += (c.depth - 1) * s_stored * d
    n += c.depth * _block_params(d, c.mlp_dim) + 2 * d  # blocks + final norm
    n += 2 * (d * d + d) + d * (c.num_classes + 1) + c.num_classes + 1  # class head
    n += 2 * (d * d + d) + d * 4 + 4  # box head
    return n


def detector_flops(config: ModelConfig, size: tuple[int, int]) -> FlopCount:
    """FLOPs of one YOLOS forward pass on a padded input of ``size = (H, W)`` pixels."""
    c, d, m = config, config.hidden_size, config.mlp_dim
    h, w = size
    p = c.patch_size
    if h < p or w < p:
        raise ValueError(f"input size {size} is smaller than one {p}x{p} patch")
    n = (h // p) * (w // p)
    t = c.num_det_tokens
    s = 1 + n + t
    stem = n * d * c.num_channels * p * p
    blocks = c.depth * s * (4 * d * d + 2 * d * m)
    heads = t * (2 * d * d + d * (c.num_classes + 1)) + t * (2 * d * d + 4 * d)
    att = c.depth * 2 * s * s * d
    return FlopCount(float(stem + blocks + heads), float(att), detector_params(c), s,
                     float(stem), float(heads))


def classifier_flops(
    depth: int, width: int, resolution: int, mlp_ratio: int = 4, patch_size: int = 16,
    num_classes: int = 1000, distilled: bool = False,
) -> FlopCount:
    """FLOPs and parameters of a DeiT classifier at ``resolution x resolution``: tokens are one
    class token (+ one distillation token) and the patches, no [DET] tokens; the classification
    head(s) read one token each."""
    d, m = width, width * mlp_ratio
    n = (resolution // patch_size) ** 2
    extra = 2 if distilled else 1
    s = extra + n
    stem = n * d * 3 * patch_size * patch_size
    heads = extra * d * num_classes
    blocks = depth * s * (4 * d * d + 2 * d * m)
    att = depth * 2 * s * s * d
    params = 3 * patch_size * patch_size * d + d + extra * d + s * d
    params += depth * _block_params(d, m) + 2 * d + extra * (d * num_classes + num_classes)
    return FlopCount(float(stem + blocks + heads), float(att), params, s, float(stem), float(heads))


def model_ratio(width: int, num_tokens: float) -> float:
    """The paper's complexity-model ratio ``f(Lin.)/f(Att.) = 12 d w^2 N / (2 d w N^2) = 6 w / N``
    (patch tokens only, stem and heads ignored). ``num_tokens`` may be fractional, e.g.
    ``800 * 1333 / 16**2``."""
    return 6.0 * width / num_tokens


# ---------------------------------------------------------------------------- datasets
def image_sizes(folder: str | Path, max_images: int | None = None) -> list[tuple[int, int]]:
    """Original ``(h, w)`` of the images of a COCO-style folder, in file-name order.

    Reads the sizes recorded in ``annotations/*.json`` when there is one (what COCO reports),
    otherwise each image's header with PIL (no decoding). Accepts the dataset root (with an
    image sub-folder such as ``val2017/``) or the image folder itself.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    ann = sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
    if ann:
        try:
            images = json.loads(ann[0].read_text())["images"]
            sizes = [(int(im["height"]), int(im["width"]), im["file_name"]) for im in images]
        except (KeyError, ValueError, TypeError) as err:
            raise DatasetError(f"{ann[0]}: cannot read images[].height/width ({err})") from err
        sizes.sort(key=lambda x: x[2])
        out = [(h, w) for h, w, _ in sizes]
    else:
        from PIL import Image

        files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        out = []
        for f in files[:max_images]:
            try:
                with Image.open(f) as im:
                    out.append((im.height, im.width))
            except OSError as err:
                raise DatasetError(f"{f}: not a readable image ({err})") from err
    if not out:
        raise DatasetError(f"{root}: no images found")
    return out[:max_images]


def dataset_flops(
    config: ModelConfig, sizes: list[tuple[int, int]], short_side: int, long_side: int = 1333,
) -> FlopCount:
    """FLOPs averaged over images of original sizes ``sizes`` (batch 1, each resized with the
    shared resize rule: short side ``short_side``, long side capped at ``long_side``, floored to
    a multiple of 16), as the paper averages over COCO val images."""
    from ..resize import resize_shape

    counts = [detector_flops(config, resize_shape(h, w, short_side, long_side)) for h, w in sizes]
    k = len(counts)
    return FlopCount(
        sum(c.linear for c in counts) / k, sum(c.attention for c in counts) / k,
        counts[0].params, round(sum(c.tokens for c in counts) / k),
        sum(c.stem for c in counts) / k, sum(c.heads for c in counts) / k,
    )


# ------------------------------------------------------------------- the paper's numbers
# (model, params M, GFLOPs, ratio) at ImageNet 224 (Table 1) and COCO (Tables 4-6).
PAPER_IMAGENET = {
    "deit-ti": dict(depth=12, width=192, heads=3, params=5.7, gflops=1.2, ratio=5.9),
    "deit-s": dict(depth=12, width=384, heads=6, params=22.1, gflops=4.5, ratio=11.8),
    "deit-b": dict(depth=12, width=768, heads=12, params=86.4, gflops=17.6, ratio=23.5),
}
# variant -> list of (eval short side, params M, GFLOPs, COCO ratio or None)
PAPER_COCO = {
    "yolos-ti": [(256, 6.5, 3.4, None), (512, 6.5, 18.8, None), (800, 6.5, 81.0, 0.28)],
    "yolos-s": [(800, 31.0, 194.0, 0.55)],
    "yolos-s-300": [(800, 31.0, 194.0, 0.55)],
    "yolos-s-dwr": [(704, 28.0, 123.0, None), (784, 28.0, 172.0, 0.49)],
    "yolos-b": [(800, 127.0, 538.0, None)],
}


def paper_entry(variant: str, short_side: int):
    """The paper's (params M, GFLOPs, ratio) for a variant at an input short side, or None."""
    for side, params, gflops, ratio in PAPER_COCO.get(variant, []):
        if side == short_side:
            return params, gflops, ratio
    return None
