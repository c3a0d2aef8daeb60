"""``yolos flops``: parameters, f(Lin.), f(Att.), total and ratio, with the paper's numbers beside."""
from __future__ import annotations

from . import options as opt
from .types import image_side, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("flops", help="count parameters and FLOPs as the YOLOS paper does",
                       description="Parameters and FLOPs of a model, from its shape alone (a variant name needs no "
                       "download: its released checkpoint has the variant's shape), beside the paper's numbers.")
    opt.add_model(p)
    p.add_argument("--imagenet", action="store_true", help="the DeiT/ViT ImageNet backbones of the paper's Table 1")
    opt.add_data(p, required=False)
    p.add_argument("--size", nargs=2, type=image_side, metavar=("H", "W"), help="one input size instead of "
                   "a typical 640x480 photo resized (or --data's images)")
    opt.add_size(p)
    p.add_argument("--max-images", type=positive_int, help="use only the first N images of --data")
    p.set_defaults(func=run)


def _config(name: str | None):
    """The ModelConfig a --model names, read without loading weights where the name tells it."""
    from ..model.variants import get_variant

    if name is not None:
        try:
            return get_variant(name).config
        except KeyError:
            pass
    model, _ = opt.resolve_model(name)
    return model.config


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

    if args.imagenet:
        print("ImageNet 224 (Table 1); paper ratio = 6 w / N complexity model")
        print(HEADER)
        for name, e in fl.PAPER_IMAGENET.items():
            f = fl.classifier_flops(e["depth"], e["width"], 224)
            print(_row(name, f, (e["params"], e["gflops"], e["ratio"])))
        return 0
    from ..model.variants import infer_variant_name, input_size

    config = _config(args.model)
    variant = config.variant or infer_variant_name(config)
    short, long = input_size(config, "transformers", args.short_side, args.long_side)
    label_name = args.model or "bundled"
    print(HEADER)
    if args.size:
        f = fl.detector_flops(config, tuple(args.size))
        print(_row(f"{label_name} {args.size[0]}x{args.size[1]}", f))
        return 0
    if args.data:
        sizes = fl.image_sizes(args.data, args.max_images)
        f = fl.dataset_flops(config, sizes, short, long)
        label = f"{label_name} @{short} ({len(sizes)} img)"
    else:
        from ..resize import resize_shape

        size = resize_shape(480, 640, short, long)  # a typical 4:3 COCO image
        f = fl.detector_flops(config, size)
        label = f"{label_name} {size[0]}x{size[1]}"
    paper = fl.paper_entry(variant, short) if variant else None
    print(_row(label, f, paper))
    width = config.hidden_size
    model_r = fl.model_ratio(width, short * long / config.patch_size**2)
    print(f"complexity-model ratio 6w/N at {short}x{long} (how the paper's COCO ratio "
          f"column is computed): {model_r:.2f}")
    return 0
