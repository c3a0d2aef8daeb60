"""Hub ids and variant names, without the internet.

huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE / HF_HOME at import, so each scenario runs in
a fresh interpreter whose endpoint is 127.0.0.1 only: either a closed port (unreachable hub) or
a tiny local server that answers like the hub's ``/resolve/`` route for a model we wrote.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import yolos

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run_scenario(code: str, endpoint: str, home: Path, offline: bool = False) -> dict:
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_OFFLINE="1" if offline else "0",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    env.pop("HF_HUB_CACHE", None)
    prog = (
        "import json, yolos\n"
        "def attempt(name):\n"
        "    try:\n"
        "        m = yolos.from_pretrained(name)\n"
        "        return {'ok': True, 'config': m.config.to_dict()}\n"
        "    except yolos.CheckpointError as e:\n"
        "        return {'ok': False, 'error': str(e)}\n" + code
    )
    done = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


def test_unreachable_hub_says_how_to_use_a_local_directory(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    for offline in (False, True):
        result = run_scenario("print(json.dumps(attempt('yolos-s')))", endpoint, tmp_path, offline)
        assert not result["ok"]
        msg = result["error"]
        assert "could not reach the Hugging Face hub for 'hustvl/yolos-small'" in msg
        assert "hf download hustvl/yolos-small --local-dir DIR" in msg
        assert 'yolos.from_pretrained("DIR")' in msg


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Serves ``files[(repo_id, filename)]`` at ``/{repo_id}/resolve/{revision}/{filename}``
    with the headers huggingface_hub reads (commit, etag, size), and hub-style 404s."""

    files: dict = {}
    log: list = []

    def _respond(self, body: bool):
        self.log.append(self.path)
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
            data = self.files.get((repo, filename))
            if data is not None:
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)
                return
            known = any(r == repo for r, _ in self.files)
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound" if known else "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self._respond(body=False)

    def do_GET(self):
        self._respond(body=True)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(tmp_path):
    model = yolos.create_model("micro", class_names={0: "a", 1: "b", 2: "c"})
    model.save_pretrained(tmp_path / "repo")
    import torch
    from safetensors.torch import load_file

    files = {("hustvl/yolos-tiny", "config.json"): (tmp_path / "repo" / "config.json").read_bytes(),
             ("hustvl/yolos-tiny", "model.safetensors"): (tmp_path / "repo" / "model.safetensors").read_bytes(),
             # a repo that only has pytorch_model.bin (older uploads)
             ("someone/yolos-bin", "config.json"): (tmp_path / "repo" / "config.json").read_bytes()}
    torch.save(load_file(tmp_path / "repo" / "model.safetensors"), tmp_path / "pytorch_model.bin")
    files[("someone/yolos-bin", "pytorch_model.bin")] = (tmp_path / "pytorch_model.bin").read_bytes()
    FakeHub.files, FakeHub.log = files, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", model
    server.shutdown()
    server.server_close()


def test_hub_download_fallback_and_offline_cache(tmp_path, fake_hub):
    endpoint, model = fake_hub
    home = tmp_path / "hf_home"
    code = ("print(json.dumps([attempt('yolos-ti'), attempt('someone/yolos-bin'), "
            "attempt('nobody/nothing')]))")
    variant, from_bin, missing = run_scenario(code, endpoint, home)
    expected = model.config.to_dict()
    expected["variant"] = "micro"
    assert variant == {"ok": True, "config": expected}  # "yolos-ti" -> hustvl/yolos-tiny
    assert from_bin == {"ok": True, "config": expected}
    assert not missing["ok"] and "no hub repository 'nobody/nothing'" in missing["error"]
    assert any(p.endswith("/hustvl/yolos-tiny/resolve/main/model.safetensors") for p in FakeHub.log)

    # Offline: what is cached still loads, what is not gives the local-directory advice.
    FakeHub.log.clear()
    cached, uncached = run_scenario(
        "print(json.dumps([attempt('hustvl/yolos-tiny'), attempt('yolos-b')]))", endpoint, home, offline=True)
    assert cached == {"ok": True, "config": expected}
    assert not uncached["ok"] and "hf download hustvl/yolos-base" in uncached["error"]
    assert FakeHub.log == []  # offline means no request at all
