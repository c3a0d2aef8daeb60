"""The HTTP service of ``yolos serve`` (FastAPI): predict, health, readiness, metrics, a web page.

``POST /predict`` takes one image as the multipart field ``file``, as the raw body (``image/*``
or ``application/octet-stream``), or as the Hugging Face inference API's JSON
``{"inputs": "<base64>", "parameters": {"threshold": 0.5, "top_k": 10}}``; ``threshold`` and
``top_k`` may also be query parameters (the JSON's win). It answers the transformers
object-detection pipeline's list ``[{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}]``.

Errors are JSON ``{"error": "..."}`` naming the problem: 400 not a usable image, 401 missing or
wrong API key, 413 body too large, 415 content type not accepted, 422 bad parameters, 503 not
ready yet or queue full (with ``Retry-After``). The server never fetches URLs or opens paths
named in a request: an image only ever comes from the request's own bytes.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool

from .. import validate
from ..checkpoint import from_pretrained
from ..errors import ImageError
from ..images import load_image
from ..inference.defaults import DEFAULT_IMAGE, DEFAULT_MODEL
from ..model.variants import eval_sizes
from .batcher import Batcher, QueueFull
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
    api_key: str | None = None
    max_image_mb: float = 20.0
    max_queue: int = 64
    max_batch: int = 8
    cors_origins: tuple[str, ...] = ()
    examples: tuple[str, ...] = field(default=())  # image files the page offers (default: bundled)

    @property
    def max_body_bytes(self) -> int:
        # base64 in JSON is 4/3 of the image, plus room for the JSON around it
        return int(self.max_image_mb * 2**20 * 4 / 3) + 64 * 1024


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class BodyLimit:
    """ASGI middleware: 413 for a body above ``limit`` bytes, by Content-Length before reading
    anything, or while it streams in (chunked uploads carry no length). The body is read here,
    bounded, and replayed to the app, which then never holds more than ``limit`` bytes."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _send_error(send, 413, f"request body is {length.decode(errors='replace')} "
                                                f"bytes, above the limit of {self.limit} (--max-image-mb)")
        parts, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            parts.append(message.get("body", b""))
            seen += len(parts[-1])
            if seen > self.limit:
                return await _send_error(send, 413, f"request body above the limit of {self.limit} "
                                                    "bytes (--max-image-mb)")
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # after the body: wait for a disconnect as usual
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class Service:
    """The model behind the app: loaded and warmed up on a thread so /healthz answers at once."""

    def __init__(self, settings: ServeSettings, model=None):
        self.settings = settings
        self.model = model
        self.batcher: Batcher | None = None
        self.error: str | None = None
        self.ready = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._load, name="yolos-load", daemon=True).start()

    def _load(self) -> None:
        try:
            if self.model is None:
                self.model = from_pretrained(self.settings.model or DEFAULT_MODEL, device=self.settings.device)
            self.model.eval()
            batcher = Batcher(self.model, self.settings.max_queue, self.settings.max_batch,
                              dtype=self.settings.dtype)
            warm = Image.new("RGB", (64, 64), (128, 128, 128))
            batcher.submit(warm, 1.0).result()  # one forward pass before /readyz says yes
            batcher.images_done = 0
            self.batcher = batcher
            self.ready.set()
        except Exception as err:  # noqa: BLE001 - reported by /readyz and the log
            self.error = f"{type(err).__name__}: {err}"
            print(f"yolos serve: error: the model did not load: {self.error}", flush=True)

    def info(self) -> dict:
        cfg = self.model.config
        short, long = eval_sizes(cfg)
        return {"variant": cfg.variant, "num_classes": cfg.num_classes,
                "classes": {str(cfg.category_id(i)): cfg.label_name(i) for i in range(cfg.num_classes)},
                "input_size": {"short_side": short, "long_side": long},
                "num_det_tokens": cfg.num_det_tokens, "max_image_mb": self.settings.max_image_mb,
                "max_queue": self.settings.max_queue, "max_batch": self.settings.max_batch,
                "dtype": str(self.settings.dtype or "float32")}


def _parameters(query, body_params: dict) -> tuple[float, int | None]:
    """``(threshold, top_k)`` from the JSON parameters, else the query; 422 naming a bad one."""
    if not isinstance(body_params, dict):
        raise HTTPError(422, "parameters: expected a JSON object")
    unknown = set(body_params) - {"threshold", "top_k"}
    if unknown:
        raise HTTPError(422, f"parameters: unknown {sorted(unknown)} (known: threshold, top_k)")
    try:
        threshold = body_params.get("threshold", query.get("threshold", 0.5))
        threshold = validate.threshold(threshold, "threshold")
        top_k = body_params.get("top_k", query.get("top_k"))
        top_k = None if top_k is None else validate.positive_int(top_k, "top_k")
    except ValueError as err:
        raise HTTPError(422, str(err)) from None
    return threshold, top_k


async def _read_image_request(request: Request) -> tuple[bytes, dict]:
    """The image bytes and the JSON ``parameters`` of a /predict request."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPError(422, "multipart body has no file field named 'file'")
        return await upload.read(), {}
    body = await request.body()
    if ctype == "application/json":
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise HTTPError(422, f"body: not valid JSON ({err})") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), str):
            raise HTTPError(422, 'body: expected {"inputs": "<base64 image>", "parameters": {...}}')
        text = payload["inputs"]
        if text.split(":", 1)[0].lower() in ("http", "https", "file", "ftp"):
            raise HTTPError(422, "inputs: URLs are not fetched; send the image bytes in base64")
        if text.startswith("data:") and "," in text:  # a data URL, as browsers make them
            text = text.split(",", 1)[1]
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPError(422, "inputs: not valid base64") from None
        return data, payload.get("parameters") or {}
    if ctype == "" or ctype.startswith(RAW_TYPES):
        return body, {}
    raise HTTPError(415, f"content type {ctype!r} not accepted: send image/*, application/octet-stream, "
                         "multipart/form-data (field 'file') or application/json")


def create_app(settings: ServeSettings | None = None, model=None) -> FastAPI:
    """The FastAPI app. ``model``: an already loaded :class:`yolos.YOLOS` (else loaded from
    ``settings.model`` on a thread when the app starts)."""
    settings = settings or ServeSettings()
    service = Service(settings, model)
    metrics = Metrics()

    async def lifespan(app):
        service.start()
        yield
        if service.batcher is not None:
            await run_in_threadpool(service.batcher.close)

    app = FastAPI(title="yolos", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        path = request.url.path
        route = path if path in ROUTES else ("/examples" if path.startswith("/examples/") else "other")
        try:
            if settings.api_key and path != "/healthz":
                sent = request.headers.get("authorization", "")
                expected = f"Bearer {settings.api_key}"
                if not hmac.compare_digest(sent.encode(), expected.encode()):
                    raise HTTPError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                    {"WWW-Authenticate": "Bearer"})
            response = await call_next(request)
        except HTTPError as err:
            response = JSONResponse({"error": err.message}, err.status, headers=err.headers)
        metrics.observe(route, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(HTTPError)
    async def http_error(request: Request, err: HTTPError):
        return JSONResponse({"error": err.message}, err.status, headers=err.headers)

    def require_ready() -> Batcher:
        if service.batcher is None:
            why = f"the model failed to load ({service.error})" if service.error else "the model is still loading"
            raise HTTPError(503, why, {"Retry-After": "5"})
        return service.batcher

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        require_ready()
        return {"status": "ready"}

    @app.get("/info")
    async def info():
        require_ready()
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
    async def predict(request: Request):
        batcher = require_ready()
        data, body_params = await _read_image_request(request)
        threshold, top_k = _parameters(request.query_params, body_params)
        if not data:
            raise HTTPError(400, "the request holds no image bytes")
        if len(data) > settings.max_image_mb * 2**20:
            raise HTTPError(413, f"image is {len(data)} bytes, above the limit of "
                                 f"{settings.max_image_mb:g} MB (--max-image-mb)")
        try:
            image = await run_in_threadpool(load_image, data)
        except ImageError as err:
            raise HTTPError(400, str(err)) from None
        try:
            future = batcher.submit(image, threshold, top_k)
        except QueueFull as err:
            raise HTTPError(503, f"server busy: {err}; retry later", {"Retry-After": "1"}) from None
        detections = await asyncio.wrap_future(future)
        return JSONResponse(detections.to_dict())

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


def _examples(settings: ServeSettings) -> list[Path]:
    return [Path(p) for p in settings.examples] if settings.examples else [DEFAULT_IMAGE]
