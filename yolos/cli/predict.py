"""``yolos predict``: detect objects in files, directories or globs; write annotated images and
one ``predictions.json``."""
from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="detect objects in images; write annotated copies and predictions.json",
        description="Detect objects in image files, directories (searched recursively) and glob "
        "patterns. Without SOURCE the bundled example image is used; without --model the bundled "
        "micro model trained on synthetic shapes.",
    )
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="image file, directory or glob ('imgs/**/*.jpg')")
    p.add_argument("--model", default=None,
                   help="checkpoint: transformers directory, .safetensors, original .pth, hub id or variant name")
    p.add_argument("--threshold", type=float, default=0.5, help="keep scores above this (YOLOS scores run low: try 0.3)")
    p.add_argument("--out", default="runs/predict", help="output directory")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (same-size images only)")
    p.add_argument("--top-k", type=int, default=None, help="at most K detections per image")
    p.add_argument("--short-side", type=int, default=None, help="resize short side (default: the model's eval size)")
    p.add_argument("--long-side", type=int, default=None, help="resize long-side cap (default: the model's eval size)")
    p.add_argument("--no-images", action="store_true", help="write predictions.json only")
    p.set_defaults(func=run)


def expand_sources(sources: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to read, and ``(source, reason)`` for sources that name nothing."""
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                missing.append((source, "directory holds no image files"))
            files.extend(found)
        elif path.is_file():
            files.append(path)  # named explicitly: tried whatever its extension
        elif glob.has_magic(source):
            found = sorted(Path(f) for f in glob.glob(source, recursive=True) if Path(f).is_file())
            if not found:
                missing.append((source, "no files match this pattern"))
            files.extend(found)
        else:
            missing.append((source, "no such file or directory"))
    unique = list(dict.fromkeys(files))  # a file reached twice is predicted once
    return unique, missing


def _output_names(files: list[Path]) -> list[str]:
    """``<stem>.jpg`` per file, suffixed ``_2``, ``_3``... where stems collide."""
    seen: dict[str, int] = {}
    names = []
    for f in files:
        n = seen.get(f.stem, 0) + 1
        seen[f.stem] = n
        names.append(f"{f.stem}.jpg" if n == 1 else f"{f.stem}_{n}.jpg")
    return names


def run(args) -> int:
    from tqdm import tqdm

    from ..checkpoint import from_pretrained
    from ..inference.defaults import DEFAULT_IMAGE, DEFAULT_MODEL
    from ..inference.predictor import iter_predict

    model_name = args.model or DEFAULT_MODEL
    if args.model is None and not DEFAULT_MODEL.is_file():
        raise FileNotFoundError(f"the bundled model {DEFAULT_MODEL} is missing; pass --model")
    sources = args.sources or [str(DEFAULT_IMAGE)]
    files, failed = expand_sources(sources)
    for source, reason in failed:
        print(f"yolos predict: {source}: {reason}", file=sys.stderr)
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = from_pretrained(model_name, device=device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = _output_names(files)
    records: dict[int, dict] = {}
    errors = [{"file": s, "error": r} for s, r in failed]

    def on_error(index, source, err) -> None:
        print(f"yolos predict: skipped {err}", file=sys.stderr)
        errors.append({"file": str(source), "error": str(err)})
        progress.update(1)

    progress = tqdm(total=len(files), desc="predict", unit="img", disable=None)
    for index, det in iter_predict(
        model, files, threshold=args.threshold, batch_size=args.batch_size, top_k=args.top_k,
        short_side=args.short_side, long_side=args.long_side, on_error=on_error,
    ):
        entries = det.to_dict()
        for entry, label in zip(entries, det.labels.tolist()):
            # COCO checkpoints predict category ids directly; other label sets are 0..K-1.
            entry["category_id"] = label
        h, w = det.image_size
        record = {"file": str(files[index]), "width": w, "height": h, "detections": entries}
        if not args.no_images:
            det.save(out / names[index])
            record["annotated"] = names[index]
        records[index] = record
        progress.update(1)
    progress.close()
    report = {
        "model": str(model_name),
        "threshold": args.threshold,
        "images": [records[i] for i in sorted(records)],
        "failed": errors,
    }
    (out / "predictions.json").write_text(json.dumps(report, indent=1))
    n_det = sum(len(r["detections"]) for r in report["images"])
    print(f"{len(records)} images, {n_det} detections -> {out}"
          + (f" ({len(errors)} failed)" if errors else ""), file=sys.stderr)
    return 1 if errors else 0
