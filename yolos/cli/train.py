"""``yolos train``: fine-tune or train YOLOS on a dataset in any layout (torchrun for several GPUs/processes)."""
from __future__ import annotations

import argparse

from . import options as opt
from .types import image_side, typed


def _sizes(text: str) -> list[int]:
    parts = text.replace(",", " ").split()
    if not parts:
        raise argparse.ArgumentTypeError(f"expected sizes like '96,112,128', got {text!r}")
    return [image_side(part) for part in parts]  # each 16..8192 pixels


def add_parser(sub) -> None:
    """The parser is built from TrainConfig's fields (their help, check, choices and flag
    metadata; :func:`yolos.train.config.option`): each option is written once, there."""
    import dataclasses

    from ..train.config import TrainConfig

    p = sub.add_parser(
        "train",
        help="train / fine-tune on a dataset (COCO, YOLO, Pascal VOC or LabelImg layout)",
        description="Train YOLOS (hustvl/YOLOS recipe: AdamW, wd 1e-4, per-epoch cosine, clip 0.1). "
        "Several processes: torchrun --nproc_per_node=N $(which yolos) train ...",
    )
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        name = "--" + f.name.replace("_", "-")
        kwargs = {"help": meta.get("help") or None}
        # Options the user leaves out stay out of the namespace (argparse.SUPPRESS), so the run
        # knows which ones were given (a resumed run takes those); TrainConfig has the defaults.
        kwargs["default"] = argparse.SUPPRESS
        if meta.get("flag"):  # a field that defaults to True, turned off by its flag
            p.add_argument(meta["flag"], action="store_true", **kwargs)
            continue
        if f.type in ("bool | None", "bool"):
            action = argparse.BooleanOptionalAction if f.type == "bool | None" else "store_true"
            p.add_argument(name, action=action, **kwargs)
            continue
        check = meta.get("check")
        if check == "sizes":
            kwargs["type"] = _sizes
        elif check is not None:
            kwargs["type"] = typed(check)
        for key in ("choices", "metavar"):
            if meta.get(key):
                kwargs[key] = meta[key]
        if f.name == "data":
            kwargs["required"] = True
        p.add_argument(name, **kwargs)
    opt.add_max_pixels(p)
    p.set_defaults(func=run)


def _negated() -> dict[str, str]:
    """``dest of a negated flag -> TrainConfig field`` (``no_augment -> augment``)."""
    import dataclasses

    from ..train.config import TrainConfig

    return {f.metadata["flag"].lstrip("-").replace("-", "_"): f.name
            for f in dataclasses.fields(TrainConfig) if f.metadata.get("flag")}


def config_from_args(args):
    """``(TrainConfig, names of the options given)`` of parsed arguments: every given field by its
    option's ``dest``, the negated flags (``--no-augment``) turned back into their fields."""
    import dataclasses

    from ..train.config import TrainConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    values.update({field: not getattr(args, flag) for flag, field in _negated().items() if hasattr(args, flag)})
    return TrainConfig(**values), set(values)


def run(args) -> int:
    import sys

    from ..train.loop import TrainingInterrupted, fit

    opt.apply_max_pixels(args)
    cfg, given = config_from_args(args)
    try:
        summary = fit(cfg, given=given)
    except TrainingInterrupted as err:
        print(f"yolos train: {err}", file=sys.stderr)
        return 130
    if not summary["is_main"]:
        return 0
    if summary.get("val"):
        v = summary["val"]
        print(f"done: best AP {summary['best_ap']:.4f}; last AP {v['AP']:.4f} AP50 {v['AP50']:.4f}; "
              f"checkpoints in {summary['out']}")
    else:
        print(f"done: checkpoints in {summary['out']}")
    return 0
