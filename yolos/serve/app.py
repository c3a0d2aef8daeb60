"""The HTTP service of ``yolos serve`` (FastAPI): predict, health, readiness, metrics, a web page.

``POST /predict`` takes one image as the multipart field ``file``, as the raw body (``image/*``
or ``application/octet-stream``), or as the Hugging Face inference API's JSON
``{"inputs": "<base64>", "parameters": {"threshold": 0.5, "top_k": 10}}``; ``threshold`` and
``top_k`` may also be query parameters (the JSON's win). It answers the transformers
object-detection pipeline's list ``[{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}]``.

Every error is JSON ``{"error": "..."}`` naming the problem: 400 not a usable image, 401 missing
or wrong API key, 404/405 no such route or method, 413 body or image too large, 415 content
type not accepted, 422 bad parameters, 431 headers too large (:mod:`yolos.serve.protocol`), 503
not ready, queue full or pixel budget spent (with ``Retry-After``). Anything unexpected is a JSON
500 without a traceback. The server never fetches URLs or opens paths named in a request: an
image only ever comes from the request's own bytes, and only raster decoders read it.

Memory is bounded by configuration: at most ``max_queue`` requests wait per worker, and the
decoded pixels of all requests in flight never exceed ``max_inflight_megapixels`` (a request is
counted from before its image is decoded until its answer is sent).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import defaults, validate
from ..checkpoint import from_pretrained
from ..defaults import DEFAULT_IMAGE, DEFAULT_MODEL
from ..errors import ImageError
from ..export.engines import compile_for
from ..images import RASTER_FORMATS, load_image
from ..model.variants import eval_sizes
from .batcher import Batcher, QueueFull
from .limits import BodyLimit, PixelBudget
from .metrics import Metrics

PAGE = Path(__file__).with_name("page.html")
RAW_TYPES = ("image/", "application/octet-stream")
ROUTES = ("/", "/predict", "/healthz", "/readyz", "/metrics", "/info", "/examples")


@dataclass(frozen=True)
class ServeSettings:
    """What ``yolos serve`` options set. ``model``: a checkpoint path or hub id (None: the
    bundled model)."""

    model: str | None = None
    device: str | None = None
    dtype: str | None = None  # compute dtype (yolos.validate.dtype): None/float32 or bfloat16
    runtime: str = "torch"  # what runs the network (yolos.export.engines.compile_for)
    api_key: str | None = None
    max_image_mb: float = defaults.MAX_IMAGE_MB
    max_queue: int = defaults.MAX_QUEUE
    max_batch: int = defaults.MAX_BATCH
    max_inflight_megapixels: float = defaults.MAX_INFLIGHT_MEGAPIXELS
    cors_origins: tuple[str, ...] = ()
    examples: tuple[str, ...] = field(default=())  # image files the page offers (default: bundled)

    def __post_init__(self):
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key: empty; give a secret, or leave the key out to serve without one")

    @property
    def max_body_bytes(self) -> int:
        # base64 in JSON is 4/3 of the image, plus room for the JSON around it
        return int(self.max_image_mb * 2**20 * 4 / 3) + 64 * 1024


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Service:
    """The model behind the app: loaded and warmed up on a thread so /healthz answers at once."""

    def __init__(self, settings: ServeSettings, model=None):
        self.settings = settings
        self.model = model
        self.batcher: Batcher | None = None
        self.error: str | None = None
        self.budget = PixelBudget(int(settings.max_inflight_megapixels * 1e6))

    def start(self, on_failure=None) -> None:
        threading.Thread(target=self._load, args=(on_failure,), name="yolos-load", daemon=True).start()

    def _load(self, on_failure) -> None:
        try:
            if self.model is None:
                self.model = from_pretrained(self.settings.model or DEFAULT_MODEL, device=self.settings.device)
            dtype = self.settings.dtype
            if self.settings.runtime != "torch":
                network = compile_for(self.model, self.settings.runtime, dtype,
                                      say=lambda m: print(f"yolos serve: {m}", flush=True))
                dtype = None if network is not self.model else dtype
                self.model = network
            self.model.eval()
            batcher = Batcher(self.model, self.settings.max_queue, self.settings.max_batch, dtype=dtype)
            batcher.submit(Image.new("RGB", (64, 64), (128, 128, 128)), 1.0).result()  # warm up before /readyz
            batcher.images_done = 0
            self.batcher = batcher
        except Exception as err:  # noqa: BLE001 - reported by /readyz and the log
            self.error = f"{type(err).__name__}: {err}"
            print(f"yolos serve: error: the model did not load: {self.error}", flush=True)
            if on_failure is not None:
                on_failure()

    def info(self) -> dict:
        cfg = self.model.config
        short, long = eval_sizes(cfg)
        s = self.settings
        return {"variant": cfg.variant, "num_classes": cfg.num_classes,
                "classes": {str(cfg.category_id(i)): cfg.label_name(i) for i in range(cfg.num_classes)},
                "input_size": {"short_side": short, "long_side": long}, "num_det_tokens": cfg.num_det_tokens,
                "max_image_mb": s.max_image_mb, "max_queue": s.max_queue, "max_batch": s.max_batch,
                "max_inflight_megapixels": s.max_inflight_megapixels, "default_threshold": defaults.THRESHOLD,
                "runtime": getattr(self.model, "runtime", "torch"),
                "dtype": getattr(self.model, "fixed_precision", None) or str(s.dtype or "float32")}

    def batcher_or_503(self) -> Batcher:
        if self.batcher is None:
            why = f"the model failed to load ({self.error})" if self.error else "the model is still loading"
            raise HTTPError(503, why, {"Retry-After": "5"})
        return self.batcher


# ----------------------------------------------------------------------------- requests
def _parameters(query, body_params) -> tuple[float, int | None]:
    """``(threshold, top_k)`` from the JSON parameters, else the query; 422 naming a bad one."""
    if not isinstance(body_params, dict):
        raise HTTPError(422, "parameters: expected a JSON object")
    unknown = set(body_params) - {"threshold", "top_k"}
    if unknown:
        raise HTTPError(422, f"parameters: unknown {sorted(map(str, unknown))} (known: threshold, top_k)")
    try:
        given = body_params.get("threshold", query.get("threshold", defaults.THRESHOLD))
        threshold = validate.threshold(given, "threshold")
        top_k = body_params.get("top_k", query.get("top_k"))
        top_k = None if top_k is None else validate.positive_int(top_k, "top_k")
    except ValueError as err:
        raise HTTPError(422, str(err)) from None
    return threshold, top_k


def _json_image(body: bytes) -> tuple[bytes, dict]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # RecursionError: absurdly deep nesting
        raise HTTPError(422, f"body: not valid JSON ({type(err).__name__})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), str):
        raise HTTPError(422, 'body: expected {"inputs": "<base64 image>", "parameters": {...}}')
    text = payload["inputs"]
    if text.split(":", 1)[0].lower() in ("http", "https", "file", "ftp"):
        raise HTTPError(422, "inputs: URLs are not fetched; send the image bytes in base64")
    if text.startswith("data:") and "," in text:  # a data URL, as browsers make them
        text = text.split(",", 1)[1]
    try:  # MIME base64 wraps lines (RFC 2045); whitespace is not data
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise HTTPError(422, "inputs: not valid base64") from None
    return data, payload.get("parameters") or {}


async def _read_image_request(request: Request) -> tuple[bytes, dict]:
    """The image bytes and the JSON ``parameters`` of a /predict request."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=8)
        except (StarletteHTTPException, ValueError, KeyError) as err:
            raise HTTPError(400, f"multipart body: {getattr(err, 'detail', None) or err}") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPError(422, "multipart body has no file field named 'file'")
        return await upload.read(), {}
    body = await request.body()
    if ctype == "application/json":
        return _json_image(body)
    if ctype == "" or ctype.startswith(RAW_TYPES):
        return body, {}
    raise HTTPError(415, f"content type {ctype!r} not accepted: send image/*, application/octet-stream, "
                         "multipart/form-data (field 'file') or application/json")


def _pixels(data: bytes) -> int:
    """The pixel count an upload decodes to, from its header (400 if it is no raster image)."""
    try:
        with Image.open(io.BytesIO(data), formats=RASTER_FORMATS) as im:
            return im.width * im.height
    except Exception:  # noqa: BLE001 - load_image gives the precise reason below
        return 0


async def predict(service: Service, settings: ServeSettings, request: Request) -> JSONResponse:
    batcher = service.batcher_or_503()
    data, body_params = await _read_image_request(request)
    threshold, top_k = _parameters(request.query_params, body_params)
    if not data:
        raise HTTPError(400, "the request holds no image bytes")
    if len(data) > settings.max_image_mb * 2**20:
        raise HTTPError(413, f"image is {len(data)} bytes, above the limit of {settings.max_image_mb:g} MB "
                             f"(--max-image-mb)")
    pixels = _pixels(data)
    if pixels > service.budget.limit:
        raise HTTPError(413, f"image has {pixels / 1e6:.1f} megapixels, above this server's in-flight budget of "
                             f"{service.budget.limit / 1e6:g} (--max-inflight-megapixels)")
    if not service.budget.acquire(pixels):
        raise HTTPError(503, "server busy: the pixel budget of the images in flight is spent; retry later",
                        {"Retry-After": "1"})
    try:
        try:
            image = await run_in_threadpool(load_image, data)
        except ImageError as err:
            raise HTTPError(400, str(err)) from None
        try:
            future = batcher.submit(image, threshold, top_k)
        except QueueFull as err:
            raise HTTPError(503, f"server busy: {err}; retry later", {"Retry-After": "1"}) from None
        del image
        try:
            detections = await asyncio.wrap_future(future)
        except ImageError as err:
            raise HTTPError(400, str(err)) from None
        return JSONResponse(detections.to_dict())
    finally:
        service.budget.release(pixels)


# ----------------------------------------------------------------------------- the app
def create_app(settings: ServeSettings | None = None, model=None, on_load_failure=None) -> FastAPI:
    """The FastAPI app. ``model``: an already loaded :class:`yolos.YOLOS` (else loaded from
    ``settings.model`` on a thread when the app starts); ``on_load_failure``: called when that
    load fails (``yolos serve`` stops the process)."""
    settings = settings or ServeSettings()
    service = Service(settings, model)
    metrics = Metrics()

    async def lifespan(app):
        service.start(on_load_failure)
        yield
        if service.batcher is not None:
            await run_in_threadpool(service.batcher.close)

    app = FastAPI(title="yolos", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    _add_errors_and_auth(app, settings, metrics)
    _add_routes(app, service, settings, metrics)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


def _add_errors_and_auth(app: FastAPI, settings: ServeSettings, metrics: Metrics) -> None:
    """The API key check, the metrics of every request, and one JSON error shape for all errors."""
    def error(status: int, message: str, headers=None) -> JSONResponse:
        return JSONResponse({"error": message}, status, headers=headers)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        path = request.url.path
        route = path if path in ROUTES else ("/examples" if path.startswith("/examples/") else "other")
        try:
            if settings.api_key and path != "/healthz":
                sent = request.headers.get("authorization", "")
                if not hmac.compare_digest(sent.encode(), f"Bearer {settings.api_key}".encode()):
                    raise HTTPError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                    {"WWW-Authenticate": "Bearer"})
            response = await call_next(request)
        except HTTPError as err:
            response = error(err.status, err.message, err.headers)
        except Exception as err:  # noqa: BLE001 - never a traceback to the client
            print(f"yolos serve: internal error on {path}: {type(err).__name__}: {err}", flush=True)
            response = error(500, "internal error")
        metrics.observe(route, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(HTTPError)
    async def http_error(request: Request, err: HTTPError):
        return error(err.status, err.message, err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request: Request, err: StarletteHTTPException):
        message = {404: f"no route {request.url.path}", 405: f"method {request.method} not allowed on "
                   f"{request.url.path}"}.get(err.status_code, str(err.detail))
        return error(err.status_code, message, getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        return error(422, f"{'.'.join(map(str, first.get('loc', ())))}: {first.get('msg', 'invalid')}")


def _add_routes(app: FastAPI, service: Service, settings: ServeSettings, metrics: Metrics) -> None:
    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        service.batcher_or_503()
        return {"status": "ready"}

    @app.get("/info")
    async def info():
        service.batcher_or_503()
        return dict(service.info(), examples=[f"/examples/{i}" for i in range(len(_examples(settings)))])

    @app.get("/metrics")
    async def prometheus():
        b = service.batcher
        return PlainTextResponse(metrics.render(b.depth if b else 0, b.images_done if b else 0, b is not None),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/examples/{index}")
    async def example(index: int):
        files = _examples(settings)
        if not 0 <= index < len(files):
            raise HTTPError(404, f"no example {index} (there are {len(files)})")
        return FileResponse(files[index])

    @app.post("/predict")
    async def predict_route(request: Request):
        return await predict(service, settings, request)


def _examples(settings: ServeSettings) -> list[Path]:
    return [Path(p) for p in settings.examples] if settings.examples else [DEFAULT_IMAGE]
