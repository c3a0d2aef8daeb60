"""Measured parity with transformers at realistic input sizes (README "measured parity").

For each released variant shape: transformers' YolosForObjectDetection with random values in
every tensor (position/mid embeddings and tokens included), written by ``save_pretrained`` and
read by ``yolos.from_pretrained``; one input at the variant's evaluation size; the largest
absolute difference of logits and boxes against transformers' eager and SDPA attention. The
``eager vs sdpa`` column is transformers against itself: the floating-point noise floor.

    python -m benchmarks.parity                       # CPU, all five variants
    python -m benchmarks.parity --device cuda --variants yolos-ti yolos-s
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time

import torch

import yolos
from yolos.model import VARIANTS

SIZES = {"yolos-ti": (512, 672), "yolos-s": (800, 1056), "yolos-s-300": (800, 1056),
         "yolos-s-dwr": (800, 1056), "yolos-b": (800, 1056)}


@torch.no_grad()
def random_transformers_model(name: str, seed: int):
    import transformers

    c = VARIANTS[name].config
    config = transformers.YolosConfig(
        hidden_size=c.hidden_size, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
        intermediate_size=c.mlp_dim, image_size=list(c.image_size), patch_size=c.patch_size,
        num_detection_tokens=c.num_det_tokens, use_mid_position_embeddings=c.mid_pos_embed,
        num_labels=c.num_classes, layer_norm_eps=1e-12,
    )
    with torch.device("meta"):
        model = transformers.YolosForObjectDetection(config)
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    for pname, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if "layernorm" in pname and pname.endswith("weight"):
            p.copy_(1 + 0.1 * noise)
        elif pname.endswith("bias"):
            p.copy_(0.02 * noise)
        elif p.dim() >= 2 and "embeddings" not in pname and "token" not in pname:
            p.copy_(noise / math.sqrt(math.prod(p.shape[1:])))  # activations stay O(1)
        else:
            p.copy_(0.1 * noise)
    return model.eval()


def max_diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    # fp32 means fp32: no TF32 in convolutions or matmuls on GPUs that have it.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    print(f"torch {torch.__version__}, device {args.device}, batch {args.batch}, fp32")
    header = ("variant", "input", "largest logit", "logits eager", "logits sdpa", "boxes eager",
              "boxes sdpa", "hf eager vs sdpa", "seconds")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for i, name in enumerate(args.variants):
        start = time.perf_counter()
        hf = random_transformers_model(name, seed=i)
        with tempfile.TemporaryDirectory() as directory:
            hf.save_pretrained(directory)
            ours = yolos.from_pretrained(directory, device=args.device)
        hf = hf.to(args.device)
        h, w = SIZES[name]
        g = torch.Generator().manual_seed(1234)
        x = torch.randn(args.batch, 3, h, w, generator=g).to(args.device)
        with torch.no_grad():
            out = ours(x)
            ref = {}
            for attn in ("eager", "sdpa"):
                hf.set_attn_implementation(attn)
                ref[attn] = hf(pixel_values=x)
        cells = [
            name, f"{h}x{w}", f"{out['logits'].abs().max().item():.2f}",
            *(f"{max_diff(out['logits'], ref[a].logits):.1e}" for a in ("eager", "sdpa")),
            *(f"{max_diff(out['pred_boxes'], ref[a].pred_boxes):.1e}" for a in ("eager", "sdpa")),
            f"{max_diff(ref['eager'].logits, ref['sdpa'].logits):.1e}",
            f"{time.perf_counter() - start:.0f}",
        ]
        print("| " + " | ".join(cells) + " |", flush=True)
        del hf, ours, out, ref
    return 0


if __name__ == "__main__":
    sys.exit(main())
