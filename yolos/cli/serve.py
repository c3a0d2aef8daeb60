"""``yolos serve``: run the HTTP API and web page (needs ``pip install "yolos[serve]"``)."""
from __future__ import annotations

import json
import os
import sys

from .. import defaults, validate
from . import options as opt
from .types import port, positive_float, positive_int, typed

SETTINGS_ENV = "YOLOS_SERVE_SETTINGS"  # how --workers > 1 hands the settings to each worker process


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve a model over HTTP: /predict, a web page, health and metrics",
        description="Serve a model over HTTP. POST /predict takes an image (multipart field 'file', "
        "raw body, or the Hugging Face JSON {\"inputs\": base64}) and answers the transformers "
        "pipeline's list of {score, label, box}. GET / is a web page; /healthz, /readyz, /metrics, "
        "/info. Binds 127.0.0.1 unless --host says otherwise.",
    )
    opt.add_model(p)
    p.add_argument("--host", default=defaults.HOST, help="address to bind (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=port, default=defaults.PORT)
    p.add_argument("--workers", type=positive_int, default=1,
                   help="server processes, each with its own model and queue")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every endpoint but /healthz "
                        "(default: $YOLOS_API_KEY; unset = no key; an empty key is refused)")
    p.add_argument("--max-image-mb", type=positive_float, default=defaults.MAX_IMAGE_MB,
                   help="largest accepted image file")
    p.add_argument("--max-queue", type=positive_int, default=defaults.MAX_QUEUE,
                   help="requests that may wait per worker; beyond it the answer is 503 with Retry-After")
    p.add_argument("--max-batch", type=positive_int, default=defaults.MAX_BATCH,
                   help="waiting images run together (same-size images only, so results do not change)")
    p.add_argument("--max-inflight-megapixels", type=typed(validate.at_least, minimum=1.0),
                   default=defaults.MAX_INFLIGHT_MEGAPIXELS,
                   help="decoded pixels all requests of a worker may hold at once (at least 1; about 3 bytes "
                        "each plus the decoder's scratch); a request beyond it gets 503 (413 for one image larger "
                        "than the whole budget). Request bodies waiting in the queue are held besides: up to "
                        "--max-queue x --max-image-mb more per worker")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads per worker (default: torch's, i.e. the cores)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages from ORIGIN to call the API (repeatable; default: none)")
    opt.add_device(p)
    opt.add_dtype(p)
    opt.add_runtime(p)
    opt.add_max_pixels(p)
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import uvicorn

        from ..serve import ServeSettings
    except ModuleNotFoundError as err:
        raise RuntimeError(f"yolos serve needs {err.name}: pip install 'yolos[serve]'") from None
    opt.check_device(args)
    opt.check_runtime(args)
    opt.apply_max_pixels(args)
    settings = ServeSettings(model=args.model, device=args.device, api_key=_api_key(args.api_key),
                             dtype=None if args.dtype is None else str(args.dtype).removeprefix("torch."),
                             runtime=args.runtime,
                             max_image_mb=args.max_image_mb, max_queue=args.max_queue,
                             max_batch=args.max_batch, max_inflight_megapixels=args.max_inflight_megapixels,
                             cors_origins=tuple(args.cors_origin))
    if args.model is not None:  # a typo is reported now, not by a server that never gets ready
        from ..checkpoint.loader import check_model_name

        check_model_name(args.model)
    os.environ[SETTINGS_ENV] = json.dumps(
        dict(settings.__dict__, cors_origins=list(settings.cors_origins), threads=args.threads,
             max_pixels=args.max_pixels))
    print(f"yolos serve: http://{args.host}:{args.port}/ ({args.workers} worker"
          f"{'s' if args.workers > 1 else ''}{', API key required' if settings.api_key else ''})", file=sys.stderr)
    # The factory builds the app inside each worker process from SETTINGS_ENV.
    from ..serve.protocol import uvicorn_http_options

    uvicorn.run("yolos.cli.serve:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", timeout_graceful_shutdown=10, **uvicorn_http_options())
    return 0


def _api_key(given: str | None) -> str | None:
    """The key from --api-key, else $YOLOS_API_KEY; an empty one (an unset shell variable) is
    an error, never a server without authentication."""
    if given is None:
        given = os.environ.get("YOLOS_API_KEY")
        where = "YOLOS_API_KEY"
    else:
        where = "--api-key"
    if given is not None and not given.strip():
        raise ValueError(f"{where}: empty key (an unset variable?); give the secret, or leave the key out "
                         f"entirely to serve without one")
    return given


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

    def stop():  # a model that cannot load: the worker exits instead of answering 503 forever
        print("yolos serve: stopping: no model to serve", flush=True)
        os._exit(3)

    return create_app(ServeSettings(**values), on_load_failure=stop)
