"""Shared fixtures: the real COCO data beside the checkout, read in place (never copied)."""
from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from benchmarks.shared_inputs import shared_data_dir


def shared_data(*parts: str) -> Path:
    """Path under the shared real data (:func:`benchmarks.shared_inputs.shared_data_dir`), or skip the
    test with the reason when it is absent."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the shared/ folder beside the checkout, "
                    f"or set YOLOS_SHARED_DATA)")
    return path


@pytest.fixture
def cats_png() -> Path:
    return shared_data("cats-39769", "000000039769.png")


@pytest.fixture
def coco_val80() -> Path:
    return shared_data("coco-val80")


@pytest.fixture
def coco128() -> Path:
    return shared_data("coco128")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored after: on a shared 2-core machine, intra-op
    threads contending with other processes make tiny models 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- a real yolos serve
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_get(url, headers=None, data=None, timeout=10):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


@contextlib.contextmanager
def running_server(*options: str):
    """A real ``yolos serve`` process on a free loopback port, ready: ``(base URL, port, process)``;
    stopped with SIGINT (as Ctrl-C) afterwards."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "yolos.cli", "serve", "--port", str(port), "--threads", "1",
                             *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if serve_get(base + "/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read())
            time.sleep(0.1)
        else:
            raise AssertionError("yolos serve never became ready")
        yield base, port, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server():
    """One real server with a small queue (for the overload test)."""
    with running_server("--max-queue", "2", "--max-batch", "1") as (base, _, _):
        yield base
