"""Training options: one dataclass, stored (as a plain dict) in every training-state checkpoint."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``yolos train`` accepts. Immutable: ``fit`` resolves it once (the recipe's
    values, the variant's lr and batch, the variant a checkpoint was built as) into a new one with
    ``dataclasses.replace``, and writes that resolved config to ``log.jsonl`` and ``state.pt``.

    ``None`` for ``lr`` / ``batch_size`` means the variant's recipe value (the paper's recipe:
    Ti 5e-5 x 2/GPU, S/B 2.5e-5 x 1/GPU, micro 3e-4 x 32). ``batch_size`` is per process; the
    global batch is ``batch_size * world_size``."""

    data: str = ""
    out: str = "runs/train"
    model: str = "micro"
    recipe: str = "paper"  # paper | scratch (yolos.train.recipe.RECIPES); fills unset options
    init: str | None = None  # DeiT/ViT checkpoint, or YOLOS checkpoint / hub id
    init_kind: str = "auto"  # auto | yolos | imagenet
    epochs: int = 10
    batch_size: int | None = None
    lr: float | None = None
    min_lr: float = 1e-7
    weight_decay: float = 1e-4
    clip_max_norm: float = 0.1
    warmup_epochs: int = 0
    warmup_lr: float = 1e-6
    warmup_steps: int | None = None  # None: the recipe's choice (paper: 0)
    bf16: bool | None = None  # None: the recipe's choice (paper: off)
    grad_checkpointing: bool = False
    detach_det_tokens: bool = False
    device: str | None = None
    workers: int = 2
    seed: int = 42
    save_every_steps: int = 0  # also write the training state every N optimizer steps
    log_every_steps: int = 0  # also append a log line every N optimizer steps
    eval_every: int = 1  # epochs; 0 = never
    resume: bool = False
    # Input sizes: short sides for training (multi-scale), one for eval; None = variant's.
    train_sizes: list[int] | None = None
    train_max_size: int | None = None
    eval_size: int | None = None
    eval_max_size: int | None = None
    augment: bool = True
    num_det_tokens: int | None = None  # only when building from scratch
    patch_size: int | None = None  # only when building from scratch
    head_priors: bool | None = None  # start the heads at the data's priors (from scratch only)
    scratch_init: bool | None = None  # xavier, sin-cos positions, local attention (from scratch only)
    anchors: bool | None = None  # each [DET] token starts at its own box (from scratch only)
    anchor_matching: float | None = None  # matcher cost on the distance to each token's anchor cell; 0 off
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields (from scratch), e.g. tests
    max_train_images: int | None = None  # subset (debugging / overfitting)
    max_val_images: int | None = None  # first N val images (by id)
    repeat: int = 1  # repeat the training set this many times per epoch (tiny datasets)
    warm_start_images: int = 0  # with warm_start_epochs: the first epochs use only these first images
    warm_start_epochs: int = 0
    progress: bool = True
    variant: str | None = None  # resolved: the variant the model was built as (None: ``model``)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        if "variant" not in d and isinstance(d.get("extra"), dict):  # states written before 0.2
            d["variant"] = d["extra"].get("variant")
        return cls(**{k: v for k, v in d.items() if k in known})
