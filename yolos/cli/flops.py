"""``yolos flops``: parameters, f(Lin.), f(Att.), total and ratio, with the paper's numbers beside."""
from __future__ import annotations

from . import options as opt


def add_parser(sub) -> None:
    p = sub.add_parser("flops", help="count parameters and FLOPs as the YOLOS paper does")
    p.add_argument("--model", default="yolos-s",
                   help="variant name (yolos-ti, yolos-s, yolos-s-dwr, yolos-b, micro, ...), a "
                        "checkpoint path, or 'deit' for the ImageNet Table 1 backbones")
    p.add_argument("--data", help="COCO folder: average over its images at the evaluation size")
    p.add_argument("--size", nargs=2, type=opt.image_side, metavar=("H", "W"), help="one padded input size")
    p.add_argument("--short-side", type=opt.image_side, help="evaluation short side (default: the variant's)")
    p.add_argument("--long-side", type=opt.image_side, default=1333, help="long-side cap (default 1333)")
    p.add_argument("--max-images", type=opt.positive_int, help="use only the first N images of --data")
    p.set_defaults(func=run)


def _config(name: str):
    from ..model.variants import eval_sizes, get_variant

    try:
        v = get_variant(name)
        return v.config, eval_sizes(name)[0], v.config.variant
    except KeyError:
        from pathlib import Path

        if not Path(name).exists():
            raise
        from ..checkpoint import from_pretrained  # a checkpoint: only its config is used

        model = from_pretrained(name)
        from ..model.variants import infer_variant_name

        variant = infer_variant_name(model.config)
        return model.config, eval_sizes(model.config)[0], variant


def _row(label, f, paper=None) -> str:
    g = 1e9
    line = (f"{label:<28} {f.params / 1e6:8.2f} M {f.linear / g:10.3f} {f.attention / g:10.3f} "
            f"{f.total / g:10.3f} {f.ratio:8.3f}")
    if paper is not None:
        params, gflops, ratio = paper
        line += f"   | paper: {params:6.1f} M {gflops:7.1f} G  ratio {'-' if ratio is None else ratio}"
    return line


HEADER = f"{'':<28} {'params':>10} {'f(Lin.) G':>10} {'f(Att.) G':>10} {'total G':>10} {'ratio':>8}"


def run(args) -> int:
    from ..analysis import flops as fl

    if args.model.lower() == "deit":
        print("ImageNet 224 (Table 1); paper ratio = 6 w / N complexity model")
        print(HEADER)
        for name, e in fl.PAPER_IMAGENET.items():
            f = fl.classifier_flops(e["depth"], e["width"], 224)
            print(_row(name, f, (e["params"], e["gflops"], e["ratio"])))
        return 0
    config, short, variant = _config(args.model)
    short = args.short_side or short
    print(HEADER)
    if args.size:
        f = fl.detector_flops(config, tuple(args.size))
        print(_row(f"{args.model} {args.size[0]}x{args.size[1]}", f))
        return 0
    if args.data:
        sizes = fl.image_sizes(args.data, args.max_images)
        f = fl.dataset_flops(config, sizes, short, args.long_side)
        label = f"{args.model} @{short} ({len(sizes)} img)"
    else:
        from ..resize import resize_shape

        size = resize_shape(480, 640, short, args.long_side)  # a typical 4:3 COCO image
        f = fl.detector_flops(config, size)
        label = f"{args.model} {size[0]}x{size[1]}"
    paper = fl.paper_entry(variant, short) if variant else None
    print(_row(label, f, paper))
    width = config.hidden_size
    model_r = fl.model_ratio(width, short * args.long_side / config.patch_size**2)
    print(f"complexity-model ratio 6w/N at {short}x{args.long_side} (how the paper's COCO ratio "
          f"column is computed): {model_r:.2f}")
    return 0
