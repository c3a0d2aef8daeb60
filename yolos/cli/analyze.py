"""``yolos analyze``: the paper's section 3.5 analyses of the [DET] tokens, as PNGs and JSON."""
from __future__ import annotations

from pathlib import Path

from . import options as opt
from .types import non_negative_int, positive_int, threshold


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="inspect [DET] tokens: box centres (Fig. 2), categories "
                                        "(Fig. 3), similarity correlations, attention maps")
    opt.add_model(p)
    opt.add_data(p)
    opt.add_val_fraction(p)
    opt.add_class_map(p)
    p.add_argument("--out", required=True, help="output folder for the PNGs and analysis.json (a folder holding "
                                                 "them already is left alone: the next free OUT2, OUT3... is used)")
    p.add_argument("--max-images", type=positive_int, help="analyze only the first N images")
    p.add_argument("--tokens", type=non_negative_int, nargs="+", default=[0, 1, 2],
                   help="[DET] tokens whose attention maps are drawn")
    p.add_argument("--image", help="draw the attention maps on this image (default: the first "
                                   "dataset image)")
    opt.add_size(p)
    p.add_argument("--score-threshold", type=threshold, default=None,
                   help="Fig. 2: keep only predictions scoring at least this (default: all T per image)")
    opt.add_threshold(p, "--class-threshold",
                      help="Fig. 3: a prediction counts for its argmax category when its score >= this")
    p.add_argument("--class-feature", choices=["logits", "probs"], default="logits",
                   help="classifier output used for the class-similarity correlation")
    opt.add_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:

    opt.check_device(args)
    class_map = opt.class_map(args)
    from ..data.dataset_config import resolve_dataset
    from ..model.variants import input_size
    from ..run_dir import run_dir

    cfg = resolve_dataset(args.data, args.val_fraction)
    model, _ = opt.resolve_model(args.model, device=args.device)
    short, long = input_size(model.config, "paper", args.short_side, args.long_side)
    dataset = cfg.dataset_for_model("val", model.config, class_map=class_map, say=print)
    label = Path(args.image).stem if args.image else f"image{dataset.ids[0]}"
    files = ("analysis.json", "fig2_box_centres.png", "fig3_categories.png", f"attention_{label}.png")
    with run_dir(args.out, run_files=files, say=lambda m: print(f"yolos analyze: {m}")) as out:
        _analyze(args, model, dataset, short, long, label, out)
    return 0


def _analyze(args, model, dataset, short: int, long: int, label: str, out: Path) -> None:
    import json

    from ..analysis.attention import det_attention_maps
    from ..analysis.det_tokens import collect
    from ..analysis.plots import plot_attention, plot_box_centres, plot_category_counts
    from ..files import atomic_write_text
    from ..images import load_image
    from ..inference.preprocess import preprocess

    stats = collect(model, dataset, short, long, args.max_images, args.class_feature,
                    progress=not args.quiet)
    names = dataset.class_names
    fig2 = plot_box_centres(stats, out / "fig2_box_centres.png", range(10), args.score_threshold)
    fig3, frac = plot_category_counts(stats, out / "fig3_categories.png", names, args.class_threshold)

    image = load_image(args.image) if args.image else dataset.load_image(dataset.ids[0])
    batch = preprocess(image, short_side=short, long_side=long)
    maps = det_attention_maps(model, batch["pixel_values"].to(args.device), args.tokens)
    maps = {k: v.cpu() for k, v in maps.items()}
    h, w = batch["resized_sizes"][0]
    attn = plot_attention(image.resize((w, h)), maps, args.tokens, out / f"attention_{label}.png",
                          model.config.class_names or names)

    summary = stats.summary()
    summary.update({
        "model": str(args.model or "bundled"), "data": str(args.data), "short_side": short, "long_side": long,
        "fig2": {"tokens": list(range(min(10, stats.centres.shape[1]))),
                 "score_threshold": args.score_threshold,
                 "points": "all T predictions per image" if args.score_threshold is None else
                 f"predictions with score >= {args.score_threshold}"},
        "fig3": {"class_threshold": args.class_threshold, "tokens_used": frac["tokens_used"],
                 "categories": {names[k]: {"gt_fraction": float(frac["gt"][k]),
                                           "token_fraction_mean": float(frac["mean"][k]),
                                           "token_fraction_std": float(frac["std"][k])}
                                for k in sorted(names)}},
        "files": [p.name for p in (fig2, fig3, attn)],
    })
    atomic_write_text(out / "analysis.json", json.dumps(summary, indent=2))
    d, c = summary["rho_cosine_vs_centre_distance"], summary["rho_cosine_vs_class_cosine"]
    fmt = lambda v: "n/a" if v is None else f"{v:+.3f}"  # noqa: E731
    print(f"{summary['images']} images, {summary['tokens']} [DET] tokens")
    print(f"rho(cos [DET] features, centre distance) = {fmt(d['mean'])}   (paper -0.80)")
    print(f"rho(cos [DET] features, cos class {args.class_feature}) = {fmt(c['mean'])}   (paper -0.07)")
    print(f"wrote {', '.join(summary['files'])}, analysis.json to {out}")
