"""``yolos export``: write a model as ONNX (fp32, fp16 or int8) or TorchScript, for every input
size or one fixed size."""
from __future__ import annotations

from pathlib import Path

from ..export.exporter import FORMATS, PRECISIONS
from . import options as opt
from .types import positive_int


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export to ONNX (fp32/fp16/int8) or TorchScript, for any input size or one",
        description="Export a model. By default the graph takes any input size (H and W multiples of the patch "
        "size, 16 for every released model) and resamples the position embeddings inside the graph with "
        "PyTorch's bicubic interpolation written as matrix products, so its outputs equal the PyTorch model's "
        "at every size. --size H W exports one fixed size instead (embeddings stored as constants). Input "
        "'pixel_values' [B,3,H,W] float32; outputs 'logits', 'pred_boxes'; the batch axis is dynamic. An "
        "existing file is never written over.",
    )
    opt.add_model(p, random_weights=True)
    p.add_argument("--format", choices=list(FORMATS), default="onnx")
    p.add_argument("--dtype", choices=list(PRECISIONS), default="fp32",
                   help="ONNX precision: fp32; fp16 (LayerNorm and softmax kept fp32, fp32 inputs and outputs); "
                        "int8 (onnxruntime's dynamic quantization of the weight matrix products)")
    p.add_argument("--size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
                   help="one fixed input size (default: any size)")
    p.add_argument("--out", default=None,
                   help="output file, or a folder to write the default name into "
                        "(default: <model>[-HxW][-fp16|-int8].onnx / .pt)")
    p.add_argument("--opset", type=positive_int, default=18, help="ONNX opset")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..export import check_export, export_model
    from ..export.exporter import check_size

    if args.size:  # bounds first: a huge size must not start loading or tracing anything
        check_size(args.size, 1)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir() and not Path(args.out).is_file():
        raise ValueError(f"--out: {args.out} is neither a file nor a folder")
    suffix = FORMATS[args.format].suffix
    model, stem = opt.resolve_model(args.model, args.random_weights)
    stem = Path(stem).stem.replace(" (random weights)", "-random")
    name = stem + (f"-{args.size[0]}x{args.size[1]}" if args.size else "") + \
        ("" if args.dtype == "fp32" else f"-{args.dtype}") + suffix
    out = Path(args.out) / name if args.out and Path(args.out).is_dir() else Path(args.out or name)
    check_export(args.format, args.dtype, out)  # before the model is traced: nothing written over
    path = export_model(model, out, format=args.format, size=tuple(args.size) if args.size else None,
                        dtype=args.dtype, opset=args.opset)
    size = f"{args.size[0]}x{args.size[1]}" if args.size else \
        f"any H x W (multiples of {model.config.patch_size})"
    print(f"wrote {path} ({args.format} {args.dtype}, input pixel_values [batch, 3, {size}])")
    return 0
