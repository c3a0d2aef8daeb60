"""Training options: one dataclass, stored (as a plain dict) in every training-state checkpoint.

Each field also describes its command-line option (``metadata``: help text, the
``yolos.validate`` check of its values, choices, a negated flag); ``yolos train`` builds its
parser from these fields, so an option is written once, here. The same checks run when a
``TrainConfig`` is made in Python, with the CLI's messages.

Every value a run trains with is decided in one place, :meth:`TrainConfig.resolved`: an option
given explicitly wins; an option left unset (None) takes its recipe's value (:data:`RECIPES`),
then the variant's (learning rate, batch, sizes) or, when fine-tuning, the checkpoint's (the
anchor matching its [DET] tokens learned under).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .. import defaults, validate

# What each recipe sets for options left unset. ``paper`` is the original recipe (and the values
# every other recipe starts from); "checkpoint": the value the --init checkpoint was trained with;
# "auto": left unset by resolved() and decided when the run starts (bf16: yolos.train.autocast).
_PAPER = {"warmup_steps": 0, "bf16": False, "head_priors": False, "scratch_init": False, "anchors": False,
          "anchor_matching": 0.0, "ema": False, "sizes_from_data": False, "det_groups": 1, "denoising": 0,
          "dense_aux": 0.0, "layer_decay": 1.0}
RECIPES: dict[str, dict] = {
    "paper": _PAPER,
    "scratch": dict(_PAPER, lr=2e-3, warmup_steps=100, scratch_init=True, anchors=True, head_priors=True,
                    bf16="auto", patch_size=16, anchor_matching=50.0, dense_aux=1.0),
    "finetune": dict(_PAPER, lr=1e-3, warmup_steps=50, head_priors=True, bf16="auto", anchor_matching="checkpoint",
                     ema=True, sizes_from_data=True),
}


CLASS_LOSSES = ("ce", "iou")  # SetCriterion(class_loss=...)

def option(default, help: str = "", check=None, choices=None, flag: str | None = None,
           metavar: str | None = None, cli: bool = True, factory=None):
    """A TrainConfig field with its command-line option. ``check``: a :mod:`yolos.validate`
    function (or ``"sizes"``: a comma list of image sides); ``flag``: a negated flag for a field
    that defaults to True (``--no-augment``); ``cli=False``: no option."""
    meta = {"help": help, "check": check, "choices": choices, "flag": flag, "metavar": metavar, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``yolos train`` accepts. Immutable; ``fit`` resolves it once
    (:meth:`resolved`) and writes the resolved config to ``log.jsonl`` and ``state.pt``.

    ``None`` for ``lr`` / ``batch_size`` / sizes means the variant's value (the paper's recipe:
    Ti 5e-5 x 2/GPU, S/B 2.5e-5 x 1/GPU, micro 3e-4 x 32); ``None`` for the recipe options
    means the recipe's value. ``batch_size`` is per process; the global batch is
    ``batch_size * world_size * accumulate_steps``."""

    data: str = option("", "dataset: a YAML (ours or a YOLO data.yaml) or a folder in COCO, YOLO, Pascal VOC or "
                       "LabelImg layout")
    out: str = option("runs/train", "run directory (logs, checkpoints)")
    model: str = option("micro", "variant to build (yolos-ti, yolos-s, yolos-b, micro, ...)")
    recipe: str = option(
        "paper",
        "paper: the original recipe (default; what the released models were trained with from DeiT). scratch: for"
        " random weights: lr 2e-3 with 100 warmup steps, the scratch init, anchor boxes, heads at the data's "
        "priors, anchor matching and the dense head (training only), bf16 autocast where it is "
        "faster, patch size 16. "
        "finetune: from "
        "a YOLOS checkpoint (--init) on new data: lr 1e-3 with 50 warmup steps, the class head's rows kept for "
        "the classes the checkpoint shares by name and new rows at the data's priors, the checkpoint's anchor "
        "matching, input sizes chosen from the data's image and object sizes, an EMA of the weights, bf16 "
        "autocast where it is faster (see docs/training.md). Options given explicitly win over the recipe's",
        choices=list(RECIPES))
    init: str | None = option(None, "start from a YOLOS checkpoint (a file, a folder, a hub id, a variant name, or "
                              "'bundled') or a DeiT/ViT ImageNet checkpoint (backbone init). The class head keeps "
                              "the rows of the classes the checkpoint shares with the data by name (in the data's "
                              "order); only new classes start fresh")
    init_kind: str = option("auto", choices=["auto", "yolos", "imagenet"])
    class_map: str | None = option(None, "the model's classes that are the data's under another name: MODEL=DATA "
                                   "pairs separated by commas (several model classes may name one data class: "
                                   "merged), or a YAML file of them; every other class is matched by name (case, "
                                   "spaces, _ and - aside)", metavar="MODEL=DATA,...")
    val_fraction: float | None = option(None, "for a dataset with no val split: the share of its images held out "
                                        "for validation, by file name, the same in every command (default "
                                        f"{defaults.VAL_FRACTION:g}; 0: the training images, which says little)",
                                        validate.fraction, metavar="F")
    epochs: int = option(10, check=validate.positive_int)
    time: str | None = option(None, "a wall-clock budget for the run (e.g. 90s, 10m, 1.5h): it ends at a clean "
                              "checkpoint with a final evaluation when the next epoch would not fit",
                              validate.duration, metavar="DURATION")
    patience: int = option(0, "stop after N evaluations without a better val AP (0: never)",
                           validate.non_negative_int, metavar="N")
    ema: bool | None = option(None, "keep an exponential moving average of the weights, evaluate it and save it "
                              "as best/last (default: the recipe's; finetune on)")
    ema_decay: float = option(0.995, "EMA decay per optimizer step, ramped up over the first ~300 steps",
                              validate.fraction)
    tensorboard: bool | None = option(None, "write TensorBoard events to OUT/tensorboard (default: when the "
                                      "tensorboard package is installed)")
    batch_size: int | None = option(None, "per process (default: the variant's recipe)", validate.positive_int)
    accumulate_steps: int = option(1, "batches per optimizer step (gradient accumulation): N steps of batch B "
                                   "take the step of one batch of N x B, for a GPU that fits few images",
                                   validate.positive_int, metavar="N")
    lr: float | None = option(None, "default: the variant's recipe", validate.positive_float)
    min_lr: float = option(1e-7, check=validate.non_negative_float)
    weight_decay: float = option(1e-4, check=validate.non_negative_float)
    layer_decay: float | None = option(
        None, "layer-wise lr decay: block i of a depth-D ViT trains at DECAY^(D - i) of the lr, the embeddings at "
        "DECAY^(D + 1), the heads at the whole lr (BEiT, ViTDet; default: the recipe's; 1 off)",
        validate.unit_scale, metavar="DECAY")
    clip_max_norm: float = option(0.1, "0: no clipping", validate.non_negative_float)
    warmup_epochs: int = option(0, check=validate.non_negative_int)
    warmup_lr: float = option(1e-6, "learning rate at the start of --warmup-epochs", validate.non_negative_float)
    warmup_steps: int | None = option(None, "linear warmup over N optimizer steps (default: the recipe's; "
                                      "paper 0)", validate.non_negative_int)
    bf16: bool | None = option(None, "bfloat16 autocast (loss and matching stay fp32; default: the recipe's: "
                               "paper off; scratch and finetune time one step each way when the run starts and "
                               "keep bf16 if it is faster)")
    grad_checkpointing: bool = option(False, "recompute blocks in backward (saves memory)")
    detach_det_tokens: bool = option(False, "keep the [DET] tokens at their random init (paper, Table 7)")
    freeze: int = option(0, "with --init: keep the embeddings (patches, position tables, [CLS] and [DET] tokens) "
                         "and the first N blocks at the checkpoint's weights; backward stops below block N, so a "
                         "step costs less (0: train everything)", validate.non_negative_int, metavar="N")
    device: str | None = option(None, "cpu, cuda, cuda:1 (default: cuda if available)")
    workers: int = option(2, check=validate.non_negative_int)
    cache: bool = option(False, "decode the training and validation images once, before training, and keep them "
                         "in memory (about width x height x 3 bytes an image; a split that would take more "
                         "than half the free memory is read from disk, with a message)")
    seed: int = option(42, check=validate.non_negative_int)
    save_every_steps: int = option(0, "also write the training state every N steps", validate.non_negative_int)
    log_every_steps: int = option(0, check=validate.non_negative_int)
    eval_every: int = option(1, "epochs between evaluations (0: never)", validate.non_negative_int)
    resume: bool = option(False, "continue the run in --out from its state.pt")
    # Input sizes: short sides for training (multi-scale), one for eval; None = variant's.
    train_sizes: list[int] | None = option(None, "training short sides, e.g. '96,112,128' (default: the "
                                           "variant's scales)", "sizes")
    train_max_size: int | None = option(None, check=validate.image_side)
    eval_size: int | None = option(None, "evaluation short side", validate.image_side)
    eval_max_size: int | None = option(None, check=validate.image_side)
    sizes_from_data: bool | None = option(
        None, "choose the training and evaluation sizes left unset from the training images and their boxes, so "
        "that most objects span at least two patches (default: the recipe's; finetune on)")
    augment: bool = option(True, "no flips/crops; resize to the largest train size", flag="--no-augment")
    num_det_tokens: int | None = option(None, "[DET] tokens: from scratch, the model's (default: the variant's); "
                                        "with --init, keep this many of the checkpoint's, those it matches most "
                                        "often to the training boxes (a faster model, though measured slower to "
                                        "fine-tune; keep more than the most objects an image holds)",
                                        validate.positive_int, metavar="K")
    patch_size: int | None = option(None, "from scratch only (default: the recipe's, else the variant's)",
                                    validate.positive_int)
    head_priors: bool | None = option(None, "from scratch: start the class and box heads at the training "
                                      "data's priors (default: the recipe's)")
    scratch_init: bool | None = option(None, "from scratch: every block starts as a local pooling (a Fourier "
                                       "position code, query = key projection), each [DET] token at its "
                                       "anchor (default: the recipe's)")
    anchors: bool | None = option(None, "from scratch: each [DET] token starts at its own box on a grid over "
                                  "the image (default: the recipe's)")
    eos_coef: float = option(0.1, "loss weight of the 'no object' class (DETR's eos_coef): higher makes "
                             "unmatched [DET] tokens say 'no object' more firmly, fewer duplicate boxes",
                             validate.non_negative_float)
    class_loss_weight: float = option(1.0, "weight of the class loss in the total, against L1 5 and GIoU 2 for the "
                                      "boxes (DETR's ce_loss_coef; the matcher's costs stay 1, 5, 2)",
                                      validate.positive_float, metavar="WEIGHT")
    class_loss: str = option("ce", "the class loss: ce (DETR's cross-entropy) or iou (IoU-aware: a matched "
                             "[DET] token's target is its object's class with probability the IoU of its box, "
                             "no object with the rest; training only, the model is unchanged)",
                             choices=CLASS_LOSSES)
    iou_power: float = option(1.0, "with --class-loss iou: the class's share of a matched token's target is "
                              "IoU^P; P < 1 keeps it high while boxes still fit poorly", validate.positive_float,
                              metavar="P")
    det_groups: int | None = option(
        None, "training only: K sets of [DET] tokens, each matched one-to-one to the objects and masked from the "
        "others (Group DETR); the model's own set is the one kept, inference and export are unchanged (default: "
        "the recipe's; 1 off)", validate.positive_int, metavar="K")
    denoising: int | None = option(
        None, "training only: N sets of the images' objects with noised boxes and labels as extra tokens that "
        "learn to give back the true ones, hidden from the patches and the [DET] tokens (DN-DETR; default: the "
        "recipe's; 0 off)", validate.non_negative_int, metavar="N")
    dense_aux: float | None = option(
        None, "training only: weight of a dense auxiliary loss in which every patch inside an object's box "
        "predicts its class and box through a head that is dropped after training (one-to-many, as Co-DETR's "
        "auxiliary heads); inference and export are unchanged (default: the recipe's; 0 off)",
        validate.non_negative_float, metavar="WEIGHT")
    anchor_matching: float | None = option(
        None, "matcher cost on the distance from each [DET] token's anchor cell to an object's centre: 50 gives "
        "each object to its nearest token (default: the recipe's; 0 off)", validate.non_negative_float,
        metavar="WEIGHT")
    model_overrides: dict = option(None, cli=False, factory=dict)  # ModelConfig fields (from scratch), e.g. tests
    max_train_images: int | None = option(None, check=validate.positive_int)
    max_val_images: int | None = option(None, "evaluate on the first N val images (with --max-train-images on "
                                        "a train-only folder: the training images themselves)",
                                        validate.positive_int)
    repeat: int = option(1, "repeat the training set N times per epoch", validate.positive_int)
    progress: bool = option(True, flag="--no-progress")
    variant: str | None = option(None, cli=False)  # resolved: the variant the model was built as

    def __post_init__(self):
        """Each field's check and choices (the CLI's, with its messages); None is "unset"."""
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            name = "--" + f.name.replace("_", "-")
            if value is None:
                continue
            if meta.get("choices") and value not in meta["choices"]:
                raise ValueError(f"{name}: expected one of {', '.join(map(str, meta['choices']))}, got {value!r}")
            check = meta.get("check")
            if check == "sizes":
                if not isinstance(value, (list, tuple)) or not value:
                    raise ValueError(f"{name}: expected a list of image sides, got {value!r}")
                object.__setattr__(self, f.name, [validate.image_side(v, name) for v in value])
            elif check is not None:
                object.__setattr__(self, f.name, check(value, name))
            elif f.type in ("bool", "bool | None") and not isinstance(value, bool):
                raise ValueError(f"{name}: expected true or false, got {value!r}")
        if self.iou_power != 1.0 and self.class_loss != "iou":  # it would change nothing, silently
            raise ValueError(f"--iou-power: only with --class-loss iou (got --class-loss {self.class_loss})")

    def resolved(self, variant, init_config=None, data_sizes=None) -> TrainConfig:
        """The config a run trains with: every option left unset (None) filled in from the
        recipe (:data:`RECIPES`), then from ``variant`` (a :class:`yolos.model.variants.Variant`:
        learning rate, batch, training scales, evaluation size) and, for the recipe's
        "checkpoint" values, from ``init_config`` (the --init model's ModelConfig; 0 without
        one). Idempotent: a resumed run resolves its saved config again to itself."""
        from ..model.variants import input_size
        from .sizes import scales_up_to

        changes = {}
        for key, value in RECIPES[self.recipe].items():
            if getattr(self, key) is None:
                if value == "auto":  # decided when the run starts, from its own model and data
                    continue
                if value == "checkpoint":
                    value = float(getattr(init_config, key, 0.0) or 0.0)
                    if key == "anchor_matching" and self.keeps_fewer_tokens(init_config):
                        value = 0.0  # its anchors are cells of the checkpoint's token grid, not the kept tokens'
                changes[key] = value
        cfg = dataclasses.replace(self, **changes)
        if cfg.sizes_from_data and data_sizes is not None and data_sizes.train_sizes is not None:
            cfg = dataclasses.replace(
                cfg, train_sizes=cfg.train_sizes or list(data_sizes.train_sizes),
                train_max_size=cfg.train_max_size or data_sizes.max_size, eval_size=cfg.eval_size or
                data_sizes.eval_size, eval_max_size=cfg.eval_max_size or data_sizes.eval_max_size)
        own = init_config.eval_size if init_config is not None else None  # a checkpoint trained at its own size
        eval_size, eval_max_size = input_size(variant.config.variant if own is None else init_config, "paper",
                                              cfg.eval_size, cfg.eval_max_size)
        scales = list(cfg.train_sizes or (variant.train_scales if own is None else scales_up_to(eval_size)))
        return dataclasses.replace(
            cfg, variant=variant.config.variant,
            val_fraction=defaults.VAL_FRACTION if cfg.val_fraction is None else cfg.val_fraction,
            lr=cfg.lr if cfg.lr is not None else variant.lr,
            batch_size=cfg.batch_size or variant.batch_size,
            train_sizes=scales, eval_size=eval_size, eval_max_size=eval_max_size,
            train_max_size=cfg.train_max_size or max(variant.train_max_size if own is None else eval_max_size,
                                                     max(scales)))

    def keeps_fewer_tokens(self, init_config) -> bool:
        """Whether the run keeps fewer [DET] tokens than the --init checkpoint has."""
        total = getattr(init_config, "num_det_tokens", None)
        return bool(self.num_det_tokens and total and self.num_det_tokens < total)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        if "variant" not in d and isinstance(d.get("extra"), dict):  # states written before 0.2
            d["variant"] = d["extra"].get("variant")
        return cls(**{k: v for k, v in d.items() if k in known})
