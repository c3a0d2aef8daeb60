"""yolos serve against a hostile client: empty secrets, memory by pixels, one bad image among
good ones, huge headers, absurd JSON, every error as JSON, raster formats only, a model that
cannot load. In-process (TestClient) where the app decides, a real server on loopback where the
protocol or the process does; every test bounded in requests and time."""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from conftest import free_port, running_server, serve_get  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from yolos import from_pretrained  # noqa: E402
from yolos.defaults import DEFAULT_IMAGE, DEFAULT_MODEL  # noqa: E402
from yolos.serve import ServeSettings, create_app  # noqa: E402

IMAGE = DEFAULT_IMAGE.read_bytes()


@pytest.fixture(scope="module")
def model():
    return from_pretrained(DEFAULT_MODEL)


def _ready(client) -> TestClient:
    client.__enter__()
    for _ in range(200):
        if client.get("/readyz").status_code == 200:
            return client
        time.sleep(0.05)
    raise AssertionError("never ready")


@pytest.fixture(scope="module")
def client(model):
    c = _ready(TestClient(create_app(ServeSettings(max_inflight_megapixels=30), model=model)))
    yield c
    c.__exit__(None, None, None)


def _png(width: int, height: int, colour=(120, 80, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "PNG")
    return buf.getvalue()


def test_an_empty_api_key_is_an_error_not_an_open_server(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        ServeSettings(api_key="")
    for args, env in ((["--api-key", ""], {}), ([], {"YOLOS_API_KEY": ""}), (["--api-key", "  "], {})):
        r = subprocess.run([sys.executable, "-m", "yolos.cli", "serve", "--port", str(free_port()), *args],
                           capture_output=True, text=True, timeout=60, env=dict(os.environ, **env))
        assert r.returncode == 2 and "empty key" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_pixel_budget_bounds_what_is_decoded_at_once(client):
    big = _png(6000, 6000)  # 36 MP: more than the whole budget of 30
    r = client.post("/predict", content=big, headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and "--max-inflight-megapixels" in r.json()["error"]
    service = client.app.state.service
    assert service.budget.acquire(25_000_000)  # someone holds most of the budget
    try:
        r = client.post("/predict", content=_png(4000, 2000), headers={"Content-Type": "image/png"})  # 8 MP
        assert r.status_code == 503 and r.headers["retry-after"] and "pixel budget" in r.json()["error"]
        small = client.post("/predict", content=IMAGE, headers={"Content-Type": "image/jpeg"})
        assert small.status_code == 200  # 0.15 MP still fits
    finally:
        service.budget.release(25_000_000)
    assert service.budget.used == 0  # every request gave its pixels back
    assert client.post("/predict", content=_png(4000, 2000), headers={"Content-Type": "image/png"}).status_code == 200


def test_a_thin_image_and_the_requests_batched_with_it(model):
    app = create_app(ServeSettings(max_batch=8), model=model)
    with TestClient(app) as c:
        _ready(c)
        thin = _png(4000, 16)
        results = {}

        def send(name, body):
            results[name] = c.post("/predict?threshold=0.3", content=body, headers={"Content-Type": "image/png"})

        threads = [threading.Thread(target=send, args=(f"thin{i}", thin)) for i in range(2)]
        threads += [threading.Thread(target=send, args=(f"ok{i}", IMAGE)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert all(r.status_code == 200 for r in results.values()), {k: r.text for k, r in results.items()}
    assert all(len(results[f"ok{i}"].json()) > 0 for i in range(4))


def test_one_failing_image_fails_only_its_own_request(model, monkeypatch):
    """Whatever goes wrong inside a batch: each request is run again alone, so only the image at
    fault gets an error."""
    from yolos.serve import batcher as B

    real = B.predict

    def fragile(model, images, **kw):
        if any(im.size == (333, 222) for im in images):
            if len(images) > 1:
                raise RuntimeError("a batch holding the odd image breaks")
            raise RuntimeError("the odd image breaks")
        return real(model, images, **kw)

    monkeypatch.setattr(B, "predict", fragile)
    jobs = B.Batcher(model, max_queue=8, max_batch=8)
    try:
        odd = Image.new("RGB", (333, 222))
        good = Image.open(io.BytesIO(IMAGE)).convert("RGB")
        jobs._jobs.put_nowait(B._Job(good, 0.5, None, f1 := B.Future()))  # queued together: one batch
        futures = [jobs.submit(odd), jobs.submit(good)]
        assert f1.result(30) is not None and futures[1].result(30) is not None
        with pytest.raises(RuntimeError, match="odd image"):
            futures[0].result(30)
    finally:
        jobs.close()


@pytest.mark.parametrize("body, words", [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ('{"inputs": "' + base64.b64encode(IMAGE).decode() + '", "parameters": {"top_k": 1e400}}', "top_k"),
    ('{"inputs": "' + base64.b64encode(IMAGE).decode() + '", "parameters": {"threshold": NaN}}', "threshold"),
])
def test_absurd_json_is_a_422(client, body, words):
    r = client.post("/predict", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and words in r.json()["error"]


def test_every_error_is_json(client):
    for method, path, status in (("get", "/nowhere", 404), ("delete", "/predict", 405), ("get", "/predict", 405)):
        r = getattr(client, method)(path)
        assert r.status_code == status and set(r.json()) == {"error"}, r.text
    r = client.post("/predict", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code in (400, 422) and set(r.json()) == {"error"}
    r = client.post("/predict", content=b"x", headers={"Content-Type": "multipart/form-data"})  # no boundary
    assert r.status_code in (400, 422) and set(r.json()) == {"error"}


def test_only_raster_formats_are_decoded(client):
    eps = io.BytesIO()
    Image.new("RGB", (32, 32)).save(eps, "EPS")  # Pillow would hand this to Ghostscript
    r = client.post("/predict", content=eps.getvalue(), headers={"Content-Type": "image/x-eps"})
    assert r.status_code == 400 and "raster formats" in r.json()["error"]


# ------------------------------------------------------------------------------ a real server
@pytest.fixture(scope="module")
def real(tmp_path_factory):
    with running_server("--max-image-mb", "2", "--max-inflight-megapixels", "12") as started:
        yield started


def _rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):  # the peak resident size
            return int(line.split()[1])
    return 0


def test_huge_headers_get_431_and_the_server_stays_responsive(real):
    base, port, _ = real
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # 4 MB of one header, 64 KB at a time, until the server hangs up
                s.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431") and b'"error"' in answer
    t0 = time.perf_counter()
    assert serve_get(base + "/healthz", timeout=5)[0] == 200 and time.perf_counter() - t0 < 2


def test_memory_follows_the_pixel_budget_not_the_concurrency(real):
    """16 concurrent uploads of a 10 MP PNG (40 KB each) against a budget of 12 MP: one decodes
    at a time, the others get 503; the server's peak memory grows by far less than 16 decoded
    images (16 x 30 MB)."""
    base, _, proc = real
    before = _rss_kib(proc.pid)
    body = _png(4000, 2500, (200, 30, 30))
    statuses = []

    def one():
        statuses.append(serve_get(base + "/predict", {"Content-Type": "image/png"}, body, timeout=60)[0])

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    grown_mib = (_rss_kib(proc.pid) - before) / 1024
    assert set(statuses) <= {200, 503} and 200 in statuses and len(statuses) == 16, statuses
    assert grown_mib < 250, grown_mib
    assert serve_get(base + "/readyz")[0] == 200


def test_an_oversized_body_is_a_413_even_for_clients_that_send_it_all_first(real):
    base, _, _ = real
    request = urllib.request.Request(base + "/predict", data=b"\0" * (16 * 2**20),
                                     headers={"Content-Type": "image/jpeg"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 413 and "limit" in json.loads(err.value.read())["error"]


def test_serve_with_a_model_that_cannot_load_stops():
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "yolos.cli", "serve", "--port", str(free_port()), "--model", "typo"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "'typo'" in r.stderr and time.perf_counter() - t0 < 30


def test_predict_keeps_no_decoded_copy_of_in_memory_sources(model):
    arrays = [np.full((64, 64, 3), 100, dtype=np.uint8) for _ in range(3)]
    found = model.predict(arrays, threshold=0.5)
    assert all(d.image is a for d, a in zip(found, arrays))  # the caller's own object, not a copy
    found[0].plot()  # still drawable
