"""``yolos info``: what a checkpoint holds (variant, size, position-embedding grid, eval size, classes)."""
from __future__ import annotations

import json
import textwrap

from . import options as opt


def add_parser(sub) -> None:
    p = sub.add_parser(
        "info",
        help="describe a checkpoint: variant, parameters, position-embedding grid, eval size, classes",
    )
    opt.add_model(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def describe_model(model) -> dict:
    from ..model.variants import eval_sizes, infer_variant_name

    c = model.config
    short, long = eval_sizes(c)
    gh, gw = c.grid_size
    return {
        "variant": c.variant or infer_variant_name(c) or "custom",
        "parameters": model.num_parameters(),
        "hidden_size": c.hidden_size, "depth": c.depth, "num_heads": c.num_heads, "mlp_dim": c.mlp_dim,
        "patch_size": c.patch_size,
        "det_tokens": c.num_det_tokens,
        "pos_embed_grid": [gh, gw],
        "pos_embed_image_size": list(c.image_size),
        "mid_pos_embed": c.mid_pos_embed,
        "eval_short_side": short, "eval_long_side": long,
        "num_classes": c.num_classes,
        "class_names": {str(i): c.label_name(i) for i in range(c.num_classes)},
        "category_ids": c.category_ids,
    }


def run(args) -> int:
    model, name = opt.resolve_model(args.model)
    info = describe_model(model)
    if args.json:
        print(json.dumps({"model": str(name), **info}, indent=1))
        return 0
    gh, gw = info["pos_embed_grid"]
    h, w = info["pos_embed_image_size"]
    # Names that are just the id (no names stored, or unused sparse COCO ids) are not listed.
    named = [f"{i}: {n}" for i, n in info["class_names"].items() if n != i and not n.startswith("N/A")]
    lines = [
        f"model           {name}",
        f"variant         {info['variant']}",
        f"parameters      {info['parameters']:,} ({info['parameters'] / 1e6:.2f} M)",
        f"shape           depth {info['depth']}, width {info['hidden_size']}, heads {info['num_heads']}, "
        f"mlp {info['mlp_dim']}, patch {info['patch_size']}, {info['det_tokens']} [DET] tokens",
        f"position grid   {gh}x{gw} patches ({h}x{w} px), mid-layer embeddings: "
        f"{'yes' if info['mid_pos_embed'] else 'no'}",
        f"eval input      short side {info['eval_short_side']}, long side <= {info['eval_long_side']}",
        f"classes         {info['num_classes']} label ids (+ no-object)",
    ]
    print("\n".join(lines))
    if named:
        print(textwrap.fill(", ".join(named), width=100, initial_indent="                ",
                            subsequent_indent="                "))
    return 0
