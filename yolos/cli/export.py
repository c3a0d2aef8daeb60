"""``yolos export``: write a model as ONNX or TorchScript for one input size."""
from __future__ import annotations

from . import options as opt


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export to ONNX or TorchScript with position embeddings baked for one size",
        description="Export a model for inputs of one size H x W (multiples of 16). The position "
        "embeddings are resampled once and stored as constants (no bicubic op in the graph); the "
        "batch axis is dynamic. Input 'pixel_values' [B,3,H,W]; outputs 'logits', 'pred_boxes'.",
    )
    p.add_argument("--model", default=None,
                   help="checkpoint (transformers directory, .safetensors, .pth), hub id, or a variant "
                   "name (random weights); default: the bundled micro model")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--size", type=opt.positive_int, nargs=2, metavar=("H", "W"), default=None,
                   help="input size (default: the model's evaluation canvas, e.g. 800 1344 for S)")
    p.add_argument("--out", default=None,
                   help="output file, or a folder to write the default name into (default: <model>-<H>x<W>.onnx / .pt)")
    p.add_argument("--opset", type=opt.positive_int, default=18, help="ONNX opset")
    p.set_defaults(func=run)


def load_model_arg(name):
    """The model a ``--model`` argument names: a checkpoint or hub id through from_pretrained, a
    variant name as random weights of that shape (fine for speed, says so), None for the bundled
    micro model."""
    from pathlib import Path

    from ..checkpoint import from_pretrained
    from ..inference.defaults import DEFAULT_MODEL
    from ..model import create_model, get_variant

    if name is None:
        if not DEFAULT_MODEL.is_file():
            raise FileNotFoundError(f"the bundled model {DEFAULT_MODEL} is missing; pass --model")
        return from_pretrained(DEFAULT_MODEL), DEFAULT_MODEL.stem
    if not Path(name).exists() and "/" not in str(name):
        try:
            get_variant(name)
        except KeyError:
            pass
        else:
            print(f"note: {name} with random weights (pass a checkpoint for trained weights)")
            return create_model(name).eval(), name
    return from_pretrained(name), Path(str(name).rstrip("/")).stem


def default_size(model) -> tuple[int, int]:
    """The evaluation canvas: short side x capped long side, rounded up to the patch size."""
    from ..model.variants import eval_sizes

    short, long = eval_sizes(model.config)
    p = model.config.patch_size
    return -(-short // p) * p, -(-long // p) * p


def run(args) -> int:
    from pathlib import Path

    from ..export import export_model
    from ..export.exporter import check_size

    if args.size:  # bounds first: a huge size must not start loading or tracing anything
        check_size(args.size, 1)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir() and not Path(args.out).is_file():
        raise ValueError(f"--out: {args.out} is neither a file nor a folder")
    model, stem = load_model_arg(args.model)
    size = tuple(args.size) if args.size else default_size(model)
    suffix = ".onnx" if args.format == "onnx" else ".pt"
    name = f"{stem}-{size[0]}x{size[1]}{suffix}"
    out = Path(args.out) / name if args.out and Path(args.out).is_dir() else (args.out or name)
    path = export_model(model, out, format=args.format, size=size, opset=args.opset)
    print(f"wrote {path} ({args.format}, input pixel_values [batch, 3, {size[0]}, {size[1]}])")
    return 0
