"""yolos serve: every endpoint and error case in-process, the queue, and one real server process.

Reference for the detections: the Python API (``yolos.predict``) on the same image, whose output
format is itself tested against transformers' pipeline in test_predict.py.
"""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from conftest import serve_get  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from yolos import from_pretrained, predict  # noqa: E402
from yolos.defaults import DEFAULT_IMAGE, DEFAULT_MODEL  # noqa: E402
from yolos.model.kernels import LowPrecision  # noqa: E402
from yolos.serve import ServeSettings, create_app  # noqa: E402
from yolos.serve.batcher import Batcher, QueueFull  # noqa: E402

IMAGE = DEFAULT_IMAGE.read_bytes()


@pytest.fixture(scope="module")
def model():
    return from_pretrained(DEFAULT_MODEL)


def client_for(model, **settings) -> TestClient:
    client = TestClient(create_app(ServeSettings(**settings), model=model))
    client.__enter__()  # runs the lifespan: load + warm-up on a thread
    for _ in range(200):
        if client.get("/readyz", headers=_auth(settings)).status_code == 200:
            return client
        time.sleep(0.05)
    raise AssertionError("the app never became ready")


def _auth(settings) -> dict:
    return {"Authorization": f"Bearer {settings['api_key']}"} if settings.get("api_key") else {}


@pytest.fixture(scope="module")
def client(model):
    c = client_for(model)
    yield c
    c.__exit__(None, None, None)


def reference(model, threshold=0.5, top_k=None):
    return predict(model, Image.open(io.BytesIO(IMAGE)), threshold=threshold, top_k=top_k)[0].to_dict()


def test_health_ready_info(client, model):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    info = client.get("/info").json()
    cfg = model.config  # keyed by the dataset's category id (the bundled model: 1..3)
    assert info["classes"] == {str(cfg.category_id(i)): cfg.label_name(i) for i in range(cfg.num_classes)}
    assert set(info["classes"]) == {"1", "2", "3"}
    assert info["input_size"] == {"short_side": 128, "long_side": 128}
    assert client.get(info["examples"][0]).content == IMAGE


@pytest.mark.parametrize("threshold", [0.05, 0.3])
def test_three_input_forms_answer_like_predict(client, model, threshold):
    want = reference(model, threshold)
    assert want, "the reference finds nothing: the comparison would be empty"
    raw = client.post(f"/predict?threshold={threshold}", content=IMAGE, headers={"Content-Type": "image/jpeg"})
    form = client.post(f"/predict?threshold={threshold}", files={"file": ("x.jpg", IMAGE, "image/jpeg")})
    hf = client.post("/predict", json={"inputs": base64.b64encode(IMAGE).decode(),
                                       "parameters": {"threshold": threshold}})
    for r in (raw, form, hf):
        assert r.status_code == 200, r.text
        got = r.json()
        assert [d["label"] for d in got] == [d["label"] for d in want]
        assert [d["box"] for d in got] == [d["box"] for d in want]
        assert [d["score"] for d in got] == pytest.approx([d["score"] for d in want], abs=1e-6)
        assert set(got[0]) == {"score", "label", "box"} and set(got[0]["box"]) == {"xmin", "ymin", "xmax", "ymax"}


def test_top_k_and_parameter_precedence(client, model):
    want = reference(model, 0.05, top_k=2)
    got = client.post("/predict?threshold=0.05&top_k=2", content=IMAGE, headers={"Content-Type": "image/jpeg"}).json()
    assert [d["box"] for d in got] == [d["box"] for d in want] and len(got) == 2
    # the JSON parameters win over the query
    got = client.post("/predict?threshold=0.99&top_k=1", json={
        "inputs": base64.b64encode(IMAGE).decode(), "parameters": {"threshold": 0.05, "top_k": 2}}).json()
    assert len(got) == 2
    # the default threshold is the pipeline's 0.5
    got = client.post("/predict", content=IMAGE, headers={"Content-Type": "image/jpeg"}).json()
    assert got == [d for d in got if d["score"] > 0.5] and len(got) == len(reference(model, 0.5))


def _bomb_png(width=10000, height=10000) -> bytes:
    """A valid PNG header for a huge image (100 megapixels) in a few dozen bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


ERRORS = [
    # (what, request kwargs, status, words in the error)
    ("not an image", dict(content=b"hello world", headers={"Content-Type": "image/jpeg"}), 400, "not a readable image"),
    ("truncated", dict(content=IMAGE[: len(IMAGE) // 2], headers={"Content-Type": "image/jpeg"}), 400, "not a readable image"),
    ("bomb", dict(content=_bomb_png(), headers={"Content-Type": "image/png"}), 400, "megapixels"),
    ("huge bomb", dict(content=_bomb_png(60000, 60000), headers={"Content-Type": "image/png"}), 400, "ecompression bomb"),
    ("empty body", dict(content=b"", headers={"Content-Type": "image/jpeg"}), 400, "no image bytes"),
    ("text body", dict(content=b"x", headers={"Content-Type": "text/plain"}), 415, "text/plain"),
    ("form-urlencoded", dict(data={"a": "b"}), 415, "application/x-www-form-urlencoded"),
    ("threshold 2", dict(params={"threshold": 2}, content=IMAGE, headers={"Content-Type": "image/jpeg"}), 422, "threshold"),
    ("threshold text", dict(params={"threshold": "high"}, content=IMAGE, headers={"Content-Type": "image/jpeg"}), 422, "threshold"),
    ("top_k 0", dict(params={"top_k": 0}, content=IMAGE, headers={"Content-Type": "image/jpeg"}), 422, "top_k"),
    ("top_k 1.5", dict(json={"inputs": base64.b64encode(IMAGE).decode(), "parameters": {"top_k": 1.5}}), 422, "top_k"),
    ("unknown parameter", dict(json={"inputs": base64.b64encode(IMAGE).decode(), "parameters": {"iou": 1}}), 422, "iou"),
    ("parameters not a dict", dict(json={"inputs": base64.b64encode(IMAGE).decode(), "parameters": [1]}), 422, "parameters"),
    ("bad base64", dict(json={"inputs": "@@not base64@@"}), 422, "base64"),
    ("url input", dict(json={"inputs": "http://127.0.0.1:1/x.jpg"}), 422, "URLs are not fetched"),
    ("file url input", dict(json={"inputs": "file:///etc/passwd"}), 422, "URLs are not fetched"),
    ("inputs missing", dict(json={"image": "x"}), 422, "inputs"),
    ("invalid json", dict(content=b"{not json", headers={"Content-Type": "application/json"}), 422, "JSON"),
    ("multipart without file", dict(files={"other": ("x.jpg", IMAGE, "image/jpeg")}), 422, "'file'"),
]


@pytest.mark.parametrize("what,kwargs,status,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_requests_get_json_errors_and_the_server_goes_on(client, model, what, kwargs, status, words):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    ok = client.post("/predict?threshold=0.05", content=IMAGE, headers={"Content-Type": "image/jpeg"})
    assert ok.status_code == 200 and len(ok.json()) == len(reference(model, 0.05))


def test_body_limits(model):
    c = client_for(model, max_image_mb=0.002)  # 2 KiB images; the bundled one is larger
    try:
        assert len(IMAGE) > 0.002 * 2**20
        r = c.post("/predict", content=IMAGE, headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 413 and "--max-image-mb" in r.json()["error"]
        big = b"\0" * (c.app.state.service.settings.max_body_bytes + 1)
        r = c.post("/predict", content=big, headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 413 and "limit" in r.json()["error"]

        def chunks():  # no Content-Length: the limit is enforced while the body streams in
            for _ in range(100):
                yield b"\0" * 1024
        r = c.post("/predict", content=chunks(), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 413
        assert c.get("/healthz").status_code == 200
    finally:
        c.__exit__(None, None, None)


def test_api_key(model):
    c = client_for(model, api_key="s3cret")
    try:
        assert c.get("/healthz").status_code == 200  # open, for load balancers
        for path in ("/readyz", "/info", "/metrics", "/"):
            r = c.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/predict", content=IMAGE, headers={"Content-Type": "image/jpeg"}).status_code == 401
        r = c.post("/predict", content=IMAGE, headers={"Content-Type": "image/jpeg", "Authorization": "Bearer s3cret"})
        assert r.status_code == 200
    finally:
        c.__exit__(None, None, None)


def test_cors_off_unless_asked(model, client):
    r = client.get("/info", headers={"Origin": "http://example.test"})
    assert "access-control-allow-origin" not in r.headers
    c = client_for(model, cors_origins=("http://example.test",))
    try:
        r = c.get("/info", headers={"Origin": "http://example.test"})
        assert r.headers["access-control-allow-origin"] == "http://example.test"
    finally:
        c.__exit__(None, None, None)


def test_metrics_count_requests(client):
    before = client.get("/metrics").text
    client.post("/predict", content=b"junk", headers={"Content-Type": "image/png"})
    client.post("/predict", content=IMAGE, headers={"Content-Type": "image/jpeg"})
    text = client.get("/metrics").text

    def value(text, line_start):
        return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(line_start))
    assert value(text, 'yolos_requests_total{path="/predict",status="400"}') == \
        value(before, 'yolos_requests_total{path="/predict",status="400"}') + 1
    assert value(text, "yolos_predict_seconds_count") == value(before, "yolos_predict_seconds_count") + 2
    assert value(text, "yolos_images_processed_total") >= value(before, "yolos_images_processed_total") + 1
    assert "yolos_queue_depth 0" in text and "yolos_ready 1" in text
    assert 'yolos_predict_seconds_bucket{le="+Inf"}' in text


def test_page_is_self_contained(client):
    html = client.get("/").text
    assert 'type="range"' in html and 'id="file"' in html
    assert "http://" not in html and "https://" not in html  # no CDN: works offline
    assert "<script src" not in html and "<link" not in html


def test_readyz_waits_for_the_model(model):
    gate = threading.Event()

    class Slow(torch.nn.Module):  # holds the warm-up forward until the gate opens
        def __init__(self):
            super().__init__()
            self.inner, self.config = model, model.config

        def forward(self, x):
            gate.wait(10)
            return self.inner(x)

    c = TestClient(create_app(ServeSettings(), model=Slow()))
    c.__enter__()
    try:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.headers["retry-after"] and "loading" in r.json()["error"]
        assert c.post("/predict", content=IMAGE, headers={"Content-Type": "image/jpeg"}).status_code == 503
        gate.set()
        for _ in range(100):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        assert c.get("/readyz").status_code == 200
    finally:
        gate.set()
        c.__exit__(None, None, None)


def test_batcher_bounded_queue_and_batched_equals_single(model):
    gate = threading.Event()
    calls = []

    class Gated(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.config = model, model.config

        def forward(self, x):
            calls.append(x.shape[0])
            gate.wait(10)
            return self.inner(x)

    rng = torch.Generator().manual_seed(0)
    images = [Image.fromarray(torch.randint(0, 255, (96 + 16 * (i % 2), 128, 3), generator=rng,
                                            dtype=torch.uint8).numpy()) for i in range(6)]
    batcher = Batcher(Gated(), max_queue=6, max_batch=8)
    try:
        first = batcher.submit(images[0], 0.0)
        for _ in range(100):  # the worker has taken the first job and waits at the gate
            if calls:
                break
            time.sleep(0.01)
        futures = [batcher.submit(im, 0.0) for im in images[1:]] + [batcher.submit(images[0], 0.0)]
        assert batcher.depth == 7
        with pytest.raises(QueueFull):
            batcher.submit(images[0], 0.0)
        gate.set()
        results = [first.result(10)] + [f.result(10) for f in futures]
    finally:
        gate.set()
        batcher.close()
    assert max(calls) > 1, "nothing was batched"
    for image, got in zip(images + [images[0]], results):
        alone = predict(model, image, threshold=0.0)[0]
        torch.testing.assert_close(got.boxes, alone.boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(got.scores, alone.scores, atol=1e-5, rtol=0)


def test_bf16_batcher_casts_the_weights_once(model, monkeypatch):
    """A server's model never trains, so its bf16 weights are cast once for all requests, and
    the answers are predict(dtype="bfloat16")'s."""
    from yolos.inference import precision

    made = []
    monkeypatch.setattr(precision, "LowPrecision", lambda *a: made.append(1) or LowPrecision(*a))
    image = Image.open(io.BytesIO(IMAGE))
    batcher = Batcher(model, max_queue=4, max_batch=2, dtype="bfloat16")
    try:
        answers = [batcher.submit(image, 0.05).result(30) for _ in range(3)]
    finally:
        batcher.close()
    assert len(made) == 1
    expected = predict(model, image, threshold=0.05, dtype="bfloat16")[0]
    assert len(expected) > 0
    for got in answers:
        assert got.label_names == expected.label_names
        torch.testing.assert_close(got.scores, expected.scores, atol=1e-6, rtol=0)


def test_real_server_process(server, model):
    status, _, body = serve_get(server + "/predict?threshold=0.05", {"Content-Type": "image/jpeg"}, IMAGE)
    assert status == 200
    got = json.loads(body)
    assert [d["box"] for d in got] == [d["box"] for d in reference(model, 0.05)]
    assert serve_get(server + "/healthz")[0] == 200
    host = socket.gethostbyname(socket.gethostname())
    if host != "127.0.0.1":  # bound to loopback only: another address of this machine is refused
        with pytest.raises(OSError):
            serve_get(f"http://{host}:{server.rsplit(':', 1)[1]}/healthz", timeout=2)


def test_real_server_overload_gives_503_not_timeouts(server):
    """32 requests at once against a queue of 2: every answer is 200 or 503 + Retry-After, none hangs."""
    big = io.BytesIO()
    Image.new("RGB", (640, 640), (90, 120, 150)).save(big, "PNG")
    results = []

    def one():
        results.append(serve_get(server + "/predict", {"Content-Type": "image/png"}, big.getvalue(), timeout=30))

    threads = [threading.Thread(target=one) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(s for s, _, _ in results)
    assert len(results) == 32 and set(statuses) <= {200, 503}, statuses
    assert 503 in statuses and 200 in statuses
    assert all(h["Retry-After"] for s, h, _ in results if s == 503)
    assert serve_get(server + "/readyz")[0] == 200  # still serving


def test_serve_refuses_bad_options():
    env = dict(os.environ)
    for args, words in ((["--port", "70000"], "--port"), (["--max-queue", "0"], "--max-queue"),
                        (["--max-image-mb", "-1"], "--max-image-mb")):
        r = subprocess.run([sys.executable, "-m", "yolos.cli", "serve", *args], capture_output=True, text=True,
                           timeout=60, env=env)
        assert r.returncode == 2 and words in r.stderr, r.stderr
