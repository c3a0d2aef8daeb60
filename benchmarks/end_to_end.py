"""End to end over real images: ``yolos predict`` against transformers' object-detection pipeline.

Both read the 80 coco-val80 JPEGs from disk, preprocess, run yolos-ti (the same random weights of
the real shape, through the transformers directory format), postprocess at threshold 0.5 and
write one JSON file of all detections. Ours is the real ``yolos predict`` command run in-process
(``--no-images``); theirs is ``pipeline("object-detection")`` with its YolosImageProcessor at
the same size (shortest edge 512, longest 1333) followed by ``json.dump``. Timed: fp32 for both,
and each side's fastest mode (ours ``--dtype bf16``, ``--runtime onnxruntime`` / ``openvino``
and ``--runtime auto``, whose one-off measurement falls in the untimed first call; theirs under
``torch.autocast`` bf16 with SDPA or eager attention, whichever is faster). Each contender runs
once untimed first; then they alternate; medians of ``--repeats``.

Also printed: preprocessing alone, ``yolos.preprocess`` against ``YolosImageProcessor`` on the
same images (the 5x goal of benchmarks/preprocess.py, re-measured here).

    python -m benchmarks.end_to_end --repeats 3
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import SHARED_DATA, environment, model_pair, table
from yolos.checkpoint.hf import save_hf_directory
from yolos.cli import main as yolos_main
from yolos.inference.preprocess import preprocess


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = SHARED_DATA / "coco-val80" / "val2017"
    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no images in {folder}")
    print(environment(), flush=True)

    from PIL import Image
    from transformers import YolosImageProcessor, pipeline

    tmp = Path(tempfile.mkdtemp(prefix="yolos-e2e-"))
    ours, theirs = model_pair("yolos-ti", "sdpa")
    ckpt = tmp / "ours.safetensors"
    ours.save(ckpt)
    hf_dir = tmp / "hf"
    save_hf_directory(ours, hf_dir)
    processor = YolosImageProcessor(size={"shortest_edge": 512, "longest_edge": 1333})
    detector = pipeline("object-detection", model=theirs, image_processor=processor, device="cpu")

    def run_ours(dtype: str | None, runtime: str = "torch"):
        def call():
            out = tmp / f"ours-{time.perf_counter_ns()}"
            said = io.StringIO()
            with contextlib.redirect_stderr(said):
                argv = ["predict", str(folder), "--model", str(ckpt), "--out", str(out), "--no-images",
                        "--threshold", "0.5", "--batch-size", "1", "--runtime", runtime,
                        "--device", "cpu"]  # the pipeline's device, also where a GPU is
                yolos_main(argv + (["--dtype", dtype] if dtype else []))
            if runtime == "auto":
                chosen.update(line=next((ln for ln in said.getvalue().splitlines() if "runtime auto:" in ln), ""))
        return call

    chosen: dict[str, str] = {}

    def run_theirs(mode: str, low: bool):
        def call():
            theirs.set_attn_implementation(mode)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low), torch.inference_mode():
                found = detector([str(f) for f in files], threshold=0.5)
            (tmp / "theirs.json").write_text(json.dumps({str(f): d for f, d in zip(files, found)}))
        return call

    contenders = {
        "yolos predict fp32": run_ours(None),
        "yolos predict bf16": run_ours("bf16"),
        "yolos predict --runtime auto": run_ours(None, "auto"),
        "yolos predict --runtime onnxruntime": run_ours(None, "onnxruntime"),
        **({"yolos predict --runtime openvino": run_ours(None, "openvino"),
            "yolos predict --runtime openvino bf16": run_ours("bf16", "openvino")}
           if importlib.util.find_spec("openvino") else {}),
        "pipeline sdpa fp32": run_theirs("sdpa", False),
        "pipeline eager fp32": run_theirs("eager", False),
        "pipeline sdpa bf16": run_theirs("sdpa", True),
        "pipeline eager bf16": run_theirs("eager", True),
    }
    for fn in contenders.values():  # warm-up: first-call costs (kernel selection, caches) on both sides
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(args.repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            print(f"  repeat {r}: {name:22s} {len(files) / times[name][-1]:6.2f} images/s", flush=True)
    rate = {k: len(files) / sorted(v)[len(v) // 2] for k, v in times.items()}
    fastest_ours = max((k for k in rate if k.startswith("yolos")), key=rate.get)
    fastest_theirs = max((k for k in rate if k.startswith("pipeline")), key=rate.get)
    theirs_fp32 = max((k for k in rate if k.startswith("pipeline") and k.endswith("fp32")), key=rate.get)
    print(chosen.get("line", ""))
    rows = [[k, f"{v:.2f}"] for k, v in rate.items()]
    print(table(rows, ["contender (80 coco-val80 images, yolos-ti 512/1333)", "images/s (median)"]))
    print(f"fp32: yolos predict / {theirs_fp32}: {rate['yolos predict fp32'] / rate[theirs_fp32]:.2f}x")
    print(f"fastest: {fastest_ours} / {fastest_theirs}: {rate[fastest_ours] / rate[fastest_theirs]:.2f}x")
    auto = "yolos predict --runtime auto"
    print(f"auto: {auto} / {fastest_theirs}: {rate[auto] / rate[fastest_theirs]:.2f}x")

    pil = [Image.open(f).convert("RGB") for f in files]
    for im in pil:
        im.load()
    prep = {"yolos.preprocess": lambda: [preprocess(im, 512, 1333) for im in pil],
            "YolosImageProcessor": lambda: [processor(im, return_tensors="pt") for im in pil]}
    prep_t = {k: [] for k in prep}
    for _ in range(args.repeats):
        for k, fn in prep.items():
            t0 = time.perf_counter()
            fn()
            prep_t[k].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in prep_t.items()}
    print(f"preprocessing alone, one image per call: yolos {1e3 * med['yolos.preprocess'] / len(pil):.1f} ms/img, "
          f"YolosImageProcessor {1e3 * med['YolosImageProcessor'] / len(pil):.1f} ms/img: "
          f"{med['YolosImageProcessor'] / med['yolos.preprocess']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
