"""CUDA checks (skipped without a GPU: tests/conftest.py skips the ``gpu`` marker)."""
import json
import math
import subprocess
import sys
import time

import pytest
import torch
from test_train_loop import TINY, make_shapes

import yolos
from yolos import create_model
from yolos.cli import main as cli_main
from yolos.export import export_model
from yolos.train.config import TrainConfig
from yolos.train.loop import fit

pytestmark = pytest.mark.gpu


def test_cuda_forward_matches_cpu():
    torch.manual_seed(0)
    model = create_model("micro", mid_pos_embed=True).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ref = model(x)
        out = model.cuda()(x.cuda())
    # TF32 matmuls may be on: a looser bound than fp32 CPU parity
    torch.testing.assert_close(out["logits"].cpu(), ref["logits"], rtol=0, atol=1e-3)
    torch.testing.assert_close(out["pred_boxes"].cpu(), ref["pred_boxes"], rtol=0, atol=1e-3)


def test_cuda_training_step_has_finite_gradients():
    model = create_model("micro").cuda().train()
    out = model(torch.randn(2, 3, 128, 128, device="cuda"))
    out["logits"].logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_cli_benchmark_on_cuda(capsys):
    assert cli_main(["benchmark", "--model", "micro", "--random-weights", "--device", "cuda", "--images", "3"]) == 0
    assert "cuda" in capsys.readouterr().out


def test_predict_on_cuda_equals_cpu():
    from yolos.defaults import DEFAULT_IMAGE, DEFAULT_MODEL

    cpu = yolos.from_pretrained(DEFAULT_MODEL)
    gpu = yolos.from_pretrained(DEFAULT_MODEL, device="cuda")
    a, b = cpu.predict(DEFAULT_IMAGE, threshold=0.3)[0], gpu.predict(DEFAULT_IMAGE, threshold=0.3)[0]
    assert a.labels.tolist() == b.labels.tolist()
    torch.testing.assert_close(b.boxes.cpu(), a.boxes, rtol=0, atol=0.5)
    bf16 = gpu.predict(DEFAULT_IMAGE, threshold=0.3, dtype="bfloat16")[0]
    assert bf16.labels.tolist() == a.labels.tolist()


def test_val_on_cuda_equals_cpu(tmp_path, capsys):
    data = make_shapes(tmp_path / "ds", n=2, size=128, n_val=6)
    ap = {}
    for device in ("cpu", "cuda"):
        assert cli_main(["val", "--data", str(data), "--device", device, "--no-progress"]) == 0
        out = capsys.readouterr().out
        ap[device] = float(next(ln.split()[-1] for ln in out.splitlines() if ln.strip().startswith("AP ")))
    assert abs(ap["cpu"] - ap["cuda"]) < 0.01, ap


def test_bf16_training_on_cuda_resumes(tmp_path):
    """A few bf16 steps on CUDA, killed-and-resumed by running the remaining epoch."""
    data = make_shapes(tmp_path / "ds", n=8)
    cfg = dict(data=str(data), out=str(tmp_path / "run"), model="micro", epochs=1, batch_size=4, workers=0,
               train_sizes=[64], eval_size=64, progress=False, eval_every=1, lr=1e-3, device="cuda", bf16=True,
               model_overrides=dict(TINY, image_size=[64, 64]))
    fit(TrainConfig.from_dict(cfg))
    fit(TrainConfig.from_dict(dict(cfg, epochs=2, resume=True)))
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1] and all(math.isfinite(r["train"]["loss"]) for r in epochs)


def test_export_from_a_cuda_model_leaves_it_on_cuda(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = create_model("micro").cuda().eval()
    path = export_model(model, tmp_path / "m.onnx")
    assert next(model.parameters()).is_cuda
    x = torch.randn(1, 3, 96, 128)
    logits, _ = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixel_values": x.numpy()})
    with torch.no_grad():
        ref = model(x.cuda())["logits"].cpu().numpy()
    assert abs(logits - ref).max() < 1e-3


def test_matcher_on_cuda_survives_non_finite_costs():
    from yolos.train.matcher import HungarianMatcher

    g = torch.Generator().manual_seed(0)
    outputs = {"logits": torch.randn(2, 5, 4, generator=g), "pred_boxes": torch.rand(2, 5, 4, generator=g)}
    outputs["logits"][0, 1] = float("nan")
    outputs["pred_boxes"][1, 0] = float("inf")
    outputs = {k: v.cuda() for k, v in outputs.items()}
    targets = [{"labels": torch.tensor([0, 2]).cuda(), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.3]]).cuda()}
               for _ in range(2)]
    for pi, ti in HungarianMatcher()(outputs, targets):
        assert sorted(ti.tolist()) == [0, 1] and len(set(pi.tolist())) == 2


def test_server_on_cuda(tmp_path):
    from fastapi.testclient import TestClient

    from yolos.defaults import DEFAULT_IMAGE
    from yolos.serve.app import ServeSettings, create_app

    app = create_app(ServeSettings(device="cuda"))
    with TestClient(app) as client:
        deadline = time.monotonic() + 120  # the model loads in the background; /readyz says when
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("/readyz").status_code == 200, client.get("/readyz").text
        answer = client.post("/predict", files={"file": ("x.jpg", DEFAULT_IMAGE.read_bytes(), "image/jpeg")})
        assert answer.status_code == 200 and isinstance(answer.json(), list), answer.text
        assert client.get("/info").json()["runtime"] == "torch"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="nccl DDP needs 2 GPUs; this machine has fewer")
def test_two_gpu_nccl_training(tmp_path):
    data = make_shapes(tmp_path / "ds", n=8)
    runner = tmp_path / "runner.py"
    runner.write_text("import json, sys\nfrom yolos.train.config import TrainConfig\nfrom yolos.train.loop import fit\n"
                      "fit(TrainConfig.from_dict(json.loads(sys.argv[1])))\n")
    cfg = dict(data=str(data), out=str(tmp_path / "ddp"), model="micro", epochs=1, batch_size=2, workers=0,
               train_sizes=[64], eval_size=64, progress=False, eval_every=1, device="cuda",
               model_overrides=dict(TINY, image_size=[64, 64]))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(runner),
                           json.dumps(cfg)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ddp" / "last.safetensors").is_file()


def test_cuda_graph_capture_replays_eager_outputs():
    """The forward pass has no host sync once its position embeddings are cached, so it can be
    captured as a CUDA graph; replays equal the eager pass."""
    model = create_model("micro").cuda().eval()
    x = torch.randn(2, 3, 64, 96, device="cuda")
    with torch.inference_mode():
        eager = model(x)["logits"].clone()
    static = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        model(static)  # warm-up on a side stream fills the cache, as capture requires
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        out = model(static)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.allclose(out["logits"], eager, atol=1e-5)
