"""``yolos serve``: run the HTTP API and web page (needs ``pip install "yolos[serve]"``)."""
from __future__ import annotations

import json
import os
import sys

from . import options as opt

SETTINGS_ENV = "YOLOS_SERVE_SETTINGS"  # how --workers > 1 hands the settings to each worker process


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve a model over HTTP: /predict, a web page, health and metrics",
        description="Serve a model over HTTP. POST /predict takes an image (multipart field 'file', "
        "raw body, or the Hugging Face JSON {\"inputs\": base64}) and answers the transformers "
        "pipeline's list of {score, label, box}. GET / is a web page; /healthz, /readyz, /metrics, "
        "/info. Binds 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("--model", default=None,
                   help="checkpoint: transformers directory, .safetensors, original .pth, hub id (default: bundled)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=opt.port, default=8000)
    p.add_argument("--workers", type=opt.positive_int, default=1,
                   help="server processes, each with its own model and queue")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every endpoint but /healthz "
                        "(default: $YOLOS_API_KEY; unset = no key)")
    p.add_argument("--max-image-mb", type=opt.positive_float, default=20.0, help="largest accepted image file")
    p.add_argument("--max-queue", type=opt.positive_int, default=64,
                   help="requests that may wait per worker; beyond it the answer is 503 with Retry-After")
    p.add_argument("--max-batch", type=opt.positive_int, default=8,
                   help="waiting images run together (same-size images only, so results do not change)")
    p.add_argument("--threads", type=opt.positive_int, default=None,
                   help="torch threads per worker (default: torch's, i.e. the cores)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages from ORIGIN to call the API (repeatable; default: none)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    opt.add_dtype(p)
    opt.add_max_pixels(p)
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import uvicorn

        from ..serve import ServeSettings
    except ModuleNotFoundError as err:
        raise RuntimeError(f"yolos serve needs {err.name}: pip install 'yolos[serve]'") from None
    opt.check_device(args)
    opt.apply_max_pixels(args)
    api_key = args.api_key if args.api_key is not None else os.environ.get("YOLOS_API_KEY") or None
    settings = ServeSettings(model=args.model, device=args.device, api_key=api_key,
                             dtype=None if args.dtype is None else str(args.dtype).removeprefix("torch."),
                             max_image_mb=args.max_image_mb, max_queue=args.max_queue,
                             max_batch=args.max_batch, cors_origins=tuple(args.cors_origin))
    os.environ[SETTINGS_ENV] = json.dumps(
        dict(settings.__dict__, cors_origins=list(settings.cors_origins), threads=args.threads,
             max_pixels=args.max_pixels))
    print(f"yolos serve: http://{args.host}:{args.port}/ ({args.workers} worker"
          f"{'s' if args.workers > 1 else ''}{', API key required' if api_key else ''})", file=sys.stderr)
    # The factory builds the app inside each worker process from SETTINGS_ENV.
    uvicorn.run("yolos.cli.serve:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", timeout_graceful_shutdown=10)
    return 0


def app_from_env():
    """The app of one worker process, from the settings ``run`` put in :data:`SETTINGS_ENV`."""
    import torch

    from ..serve import ServeSettings

    values = json.loads(os.environ[SETTINGS_ENV])
    threads, max_pixels = values.pop("threads"), values.pop("max_pixels")
    if threads:
        torch.set_num_threads(threads)
    if max_pixels is not None:
        from ..images import set_max_pixels

        set_max_pixels(max_pixels)
    values["cors_origins"] = tuple(values["cors_origins"])
    values["examples"] = tuple(values["examples"])
    from ..serve import create_app

    return create_app(ServeSettings(**values))
