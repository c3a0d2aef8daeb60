"""Model configuration: one dataclass that fully describes a YOLOS network.

It is stored inside every checkpoint the project writes (nanoGPT habit), so a single file
rebuilds the model without any other context.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


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

    def __post_init__(self):
        self.image_size = tuple(int(s) for s in self.image_size)
        if self.class_names is not None:
            self.class_names = {int(k): str(v) for k, v in self.class_names.items()}
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

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
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
