"""Model configuration: one dataclass that fully describes a YOLOS network.

It is stored inside every checkpoint the project writes (nanoGPT habit), so a single file
rebuilds the model without any other context.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Bounds on every size a file's metadata can give, checked before a tensor is allocated (a
# yolos-b is 768 wide and 12 deep; these leave room for far larger models and refuse nonsense).
_BOUNDS = {"hidden_size": (1, 16384), "depth": (1, 256), "num_heads": (1, 1024), "mlp_dim": (1, 65536),
           "patch_size": (1, 1024), "num_channels": (1, 64), "num_det_tokens": (1, 10000),
           "num_classes": (1, 100000)}


@dataclass
class ModelConfig:
    """Shape of a YOLOS detector.

    ``num_classes`` counts label ids, *not* including the extra no-object logit: the class head
    has ``num_classes + 1`` outputs and index ``num_classes`` means "no object". COCO keeps its
    sparse id space (ids 1..90), so ``num_classes = 91`` as in DETR and transformers.
    ``image_size`` is the (H, W) in pixels that the stored position-embedding grid was built
    for (``image_size // patch_size`` cells per side); at run time the grid is resampled to the
    input, so any input size works.
    """

    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    num_channels: int = 3
    num_det_tokens: int = 100
    num_classes: int = 91
    image_size: tuple[int, int] = (512, 864)
    mid_pos_embed: bool = True
    layer_norm_eps: float = 1e-12
    class_names: dict[int, str] | None = None
    variant: str | None = None
    # The dataset's category id of each label (label i means category_ids[i]); None: the label
    # is the category id itself (COCO's 91-id space, and models trained before ids were kept).
    category_ids: list[int] | None = None
    # The anchor-matching weight its [DET] tokens were trained under (yolos train
    # --anchor-matching; 0: plain Hungarian matching); fine-tuning (--recipe finetune) keeps it.
    anchor_matching: float = 0.0
    # (short, long) sides its inputs are resized to, when training chose them (fine-tuning sizes
    # them from the data); None: the variant's evaluation size (yolos.model.eval_sizes).
    eval_size: tuple[int, int] | None = None

    def __post_init__(self):
        for name, (lo, hi) in _BOUNDS.items():  # before anything is built from a file's metadata
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
        if not isinstance(self.image_size, (list, tuple)) or len(self.image_size) != 2 or not all(
                isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 65536 for s in self.image_size):
            raise ValueError(f"image_size must be two integers (H, W) in 1..65536, got {self.image_size!r}")
        if isinstance(self.anchor_matching, bool) or not isinstance(self.anchor_matching, (int, float)) \
                or not 0 <= self.anchor_matching < 1e6:
            raise ValueError(f"anchor_matching must be a number >= 0, got {self.anchor_matching!r}")
        if isinstance(self.layer_norm_eps, bool) or not isinstance(self.layer_norm_eps, (int, float)) \
                or not 0 < self.layer_norm_eps < 1:
            raise ValueError(f"layer_norm_eps must be a number in (0, 1), got {self.layer_norm_eps!r}")
        self.image_size = tuple(int(s) for s in self.image_size)
        if self.eval_size is not None:
            if not isinstance(self.eval_size, (list, tuple)) or len(self.eval_size) != 2 or not all(
                    isinstance(s, int) and not isinstance(s, bool) and 16 <= s <= 8192 for s in self.eval_size) \
                    or self.eval_size[0] > self.eval_size[1]:
                raise ValueError(f"eval_size must be (short, long) sides in 16..8192 with short <= long, "
                                 f"got {self.eval_size!r}")
            self.eval_size = tuple(int(s) for s in self.eval_size)
        if self.class_names is not None:
            self.class_names = {int(k): str(v) for k, v in self.class_names.items()}
        if self.category_ids is not None:
            self.category_ids = [int(i) for i in self.category_ids]
            if len(self.category_ids) != self.num_classes or len(set(self.category_ids)) != self.num_classes:
                raise ValueError(f"category_ids must give {self.num_classes} distinct ids (one per label), "
                                 f"got {self.category_ids}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if any(s < self.patch_size for s in self.image_size):
            raise ValueError(f"image_size {self.image_size} is smaller than one patch ({self.patch_size})")

    @property
    def grid_size(self) -> tuple[int, int]:
        """(rows, cols) of the stored position-embedding grid."""
        return (self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size)

    @property
    def seq_len(self) -> int:
        """Stored sequence length: cls + grid cells + [DET] tokens."""
        rows, cols = self.grid_size
        return 1 + rows * cols + self.num_det_tokens

    def label_name(self, label: int) -> str:
        if self.class_names and label in self.class_names:
            return self.class_names[label]
        return str(label)

    def category_id(self, label: int) -> int:
        """The dataset's category id of a label (the label itself when no ids are stored)."""
        label = int(label)
        if self.category_ids is None or not 0 <= label < len(self.category_ids):
            return label
        return self.category_ids[label]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        if self.eval_size is not None:
            d["eval_size"] = list(self.eval_size)
        if self.class_names is not None:
            d["class_names"] = {str(k): v for k, v in self.class_names.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


__all__ = ["ModelConfig"]
