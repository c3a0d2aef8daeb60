"""Load test of ``yolos serve`` on 127.0.0.1: throughput, latency, errors, memory, overload.

Starts one ``yolos serve`` process (the bundled model unless ``--model``) on a free loopback
port, then:

1. **steady load**: ``--requests`` POST /predict requests from ``--concurrency`` client threads
   (keep-alive connections), over held-out synthetic images of the bundled model's task;
2. **overload**: ``--overload-requests`` requests at once from ``--overload-concurrency``
   threads against the same server, whose queue holds ``--max-queue``: every answer must be a 200
   or a 503 with Retry-After, none may time out;
3. **in-process**: ``yolos.predict`` on the same images in this process, one image per call and
   in lists of ``--max-batch``, for comparison.

Prints requests per second, p50/p95/p99 latency, errors by status, the server's resident memory
before and after, and the ratio to in-process throughput. The client threads share the machine's
cores with the server, so on a small machine the server's figure is a lower bound.

    python -m benchmarks.serve_load                       # 10 000 requests at concurrency 16
    python -m benchmarks.serve_load --requests 500 --overload-requests 200
    python -m benchmarks.serve_load --runtime auto          # the server on the runtime auto picks
"""
from __future__ import annotations

import argparse
import http.client
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import environment
from yolos import from_pretrained, predict
from yolos.data.synthetic import write_synthetic_dataset
from yolos.defaults import DEFAULT_MODEL


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "yolos.cli", "serve", "--port", str(port), "--max-queue", str(args.max_queue),
           "--max-batch", str(args.max_batch), "--runtime", args.runtime]
    cmd += ["--model", args.model] if args.model else []
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"yolos serve exited: {proc.stderr.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("yolos serve did not become ready in 120 s")


def load(port: int, bodies: list[bytes], requests: int, concurrency: int, timeout: float):
    """``(seconds, latencies of 200s, Counter of statuses)`` for ``requests`` POSTs."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    counter = iter(range(requests))

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=bodies[i % len(bodies)],
                             headers={"Content-Type": "image/jpeg"})
                r = conn.getresponse()
                r.read()
                status = r.status
                if status == 503 and not r.getheader("Retry-After"):
                    status = "503 without Retry-After"
            except (OSError, http.client.HTTPException) as err:
                status = type(err).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            dt = time.perf_counter() - t0
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(dt)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, statuses


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint to serve (default: the bundled model)")
    p.add_argument("--runtime", default="torch", choices=["torch", "onnxruntime", "openvino", "auto"],
                   help="what runs the network in the server (yolos serve --runtime)")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--images", type=int, default=64, help="distinct held-out images, cycled")
    p.add_argument("--max-queue", type=int, default=64)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--overload-requests", type=int, default=1000)
    p.add_argument("--overload-concurrency", type=int, default=128)
    p.add_argument("--timeout", type=float, default=60.0, help="client timeout per request, seconds")
    args = p.parse_args(argv)
    print(environment(), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_dataset(Path(tmp), args.images, 128, 1, 8, seed=424_242, min_size=12, max_size=64)
        files = sorted((Path(tmp) / "images").iterdir())
        bodies = [f.read_bytes() for f in files]

    port = free_port()
    server = start_server(args, port)
    try:
        load(port, bodies, 500, args.concurrency, args.timeout)  # warm the server's paths and pools
        rss = [rss_mb(server.pid)]
        seconds, lat, statuses = 0.0, [], Counter()
        for _ in range(4):  # in quarters, to see whether memory keeps growing
            s, part_lat, part_statuses = load(port, bodies, args.requests // 4, args.concurrency, args.timeout)
            seconds, lat, statuses = seconds + s, lat + part_lat, statuses + part_statuses
            rss.append(rss_mb(server.pid))
        rps = statuses[200] / seconds
        errors = {k: v for k, v in statuses.items() if k != 200}
        print(f"steady: {args.requests} requests at concurrency {args.concurrency} in {seconds:.1f} s: "
              f"{rps:.1f} requests/s; latency p50 {1e3 * percentile(lat, 50):.1f} ms, "
              f"p95 {1e3 * percentile(lat, 95):.1f} ms, p99 {1e3 * percentile(lat, 99):.1f} ms; "
              f"errors {errors or 0}; server memory (MB) before and after each quarter: "
              f"{' -> '.join(f'{m:.0f}' for m in rss)}", flush=True)
        o_seconds, _, o_statuses = load(port, bodies, args.overload_requests, args.overload_concurrency, args.timeout)
        print(f"overload: {args.overload_requests} requests at concurrency {args.overload_concurrency} "
              f"(queue {args.max_queue}) in {o_seconds:.1f} s: statuses {dict(o_statuses)}; server memory "
              f"{rss_mb(server.pid):.0f} MB; still ready: {_ready(port)}", flush=True)
    finally:
        server.terminate()
        server.wait(30)

    from PIL import Image

    model = from_pretrained(args.model or DEFAULT_MODEL)
    images = [Image.open(io.BytesIO(b)) for b in bodies]
    rates = {}
    for batch in (1, args.max_batch):
        predict(model, images[:batch], batch_size=batch)  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 5.0:
            for i in range(0, len(images), batch):
                predict(model, images[i:i + batch], batch_size=batch)
                n += len(images[i:i + batch])
        rates[batch] = n / (time.perf_counter() - t0)
    print(f"in-process yolos.predict on the same images: {rates[1]:.1f} images/s one per call, "
          f"{rates[args.max_batch]:.1f} images/s in lists of {args.max_batch}", flush=True)
    print(f"server / in-process: {rps / rates[1]:.2f}x (one per call), {rps / rates[args.max_batch]:.2f}x "
          f"(lists of {args.max_batch})")
    return 0


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/readyz")
    return conn.getresponse().status == 200


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
