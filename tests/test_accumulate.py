"""Gradient accumulation: N optimizer-step micro-batches of batch B give the parameters of one
step of batch N x B, in one process and under torchrun, with every image holding a different
number of boxes (so the box-count and class-weight normalisation of the loss must be the whole
step's, not each micro-batch's).

Why not bit-exact: a batch of 4 and two of 2 block their matrix products differently and add
gradients in another order (float32 rounding, ~1e-7 relative). Equal only for images of one
size: padding changes YOLOS' outputs, however the batch is split (no pixel mask). The tolerance
(1e-5) is a hundredth of one AdamW update at lr 1e-3; another global batch, or per-micro-batch
normalisation, moves the weights by far more (checked below)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolos.checkpoint.native import load_native
from yolos.train.config import TrainConfig
from yolos.train.loop import fit

sys.path.insert(0, str(Path(__file__).parent))
from test_train_loop import TINY, make_shapes  # noqa: E402

ATOL = 1e-5
RUNNER = """
import json, sys, torch
torch.set_num_threads(1)
from yolos.train.config import TrainConfig
from yolos.train.loop import fit
fit(TrainConfig.from_dict(json.loads(sys.argv[1])))
"""
pytestmark = pytest.mark.usefixtures("one_thread")


def _config(data, out, batch_size, accumulate_steps=1, **kw):
    return dict(dict(data=str(data), out=str(out), model="micro", epochs=2, batch_size=batch_size,
                     accumulate_steps=accumulate_steps, workers=0, train_sizes=[64], eval_size=64, augment=False,
                     progress=False, eval_every=0, lr=1e-3, seed=3, device="cpu",
                     model_overrides=dict(TINY, image_size=[64, 64])), **kw)


def _largest_difference(a, b) -> float:
    x, y = load_native(a / "last.safetensors").state_dict(), load_native(b / "last.safetensors").state_dict()
    return max((x[k] - y[k]).abs().max().item() for k in x)


def _losses(out) -> list[float]:
    rows = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    return [r["train"]["loss"] for r in rows if r["type"] == "epoch"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 1 to 4 objects per image: the micro-batches of a step hold different box counts
    return make_shapes(tmp_path_factory.mktemp("acc") / "ds", n=12, min_objects=1, max_objects=4, n_val=2)


def test_accumulated_micro_batches_take_the_step_of_one_batch(data, tmp_path):
    torch.set_num_threads(1)
    runs = {name: tmp_path / name for name in ("b4", "b2x2", "b1x4", "b2")}
    fit(TrainConfig.from_dict(_config(data, runs["b4"], 4)))
    fit(TrainConfig.from_dict(_config(data, runs["b2x2"], 2, 2)))
    fit(TrainConfig.from_dict(_config(data, runs["b1x4"], 1, 4)))
    for name in ("b2x2", "b1x4"):
        worst = _largest_difference(runs["b4"], runs[name])
        print(f"max |batch 4 - {name}|: {worst:.3g}")
        assert worst <= ATOL, name
        assert _losses(runs[name]) == pytest.approx(_losses(runs["b4"]), rel=1e-5)
    rows = [json.loads(ln) for ln in (runs["b1x4"] / "log.jsonl").read_text().splitlines()]
    assert [r["train"]["steps"] for r in rows if r["type"] == "epoch"] == [3, 3]  # 12 images / 4 per step
    fit(TrainConfig.from_dict(_config(data, runs["b2"], 2)))  # another global batch lands far away
    assert _largest_difference(runs["b4"], runs["b2"]) > 50 * ATOL


def test_accumulation_under_torchrun_matches_one_process(data, tmp_path):
    """2 processes x batch 1 x 2 accumulated = 1 process x batch 4, although the ranks' images
    hold different numbers of boxes (the class-loss weights are reduced over ranks too)."""
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", str(runner), json.dumps(_config(data, tmp_path / "ddp", 1, 2))]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.set_num_threads(1)
    fit(TrainConfig.from_dict(_config(data, tmp_path / "one", 4)))
    worst = _largest_difference(tmp_path / "one", tmp_path / "ddp")
    print(f"max |1 process batch 4 - 2 processes x batch 1 x 2|: {worst:.3g}")
    assert worst <= ATOL


def test_accumulation_with_the_dense_head_takes_the_step_of_one_batch(data, tmp_path):
    """--dense-aux divides its loss by the patch counts of the whole step (not of each
    micro-batch), so accumulated micro-batches still take the step of one batch."""
    torch.set_num_threads(1)
    fit(TrainConfig.from_dict(_config(data, tmp_path / "b4", 4, dense_aux=1.0)))
    fit(TrainConfig.from_dict(_config(data, tmp_path / "b1x4", 1, 4, dense_aux=1.0)))
    assert _largest_difference(tmp_path / "b4", tmp_path / "b1x4") <= ATOL
    for part in ("b4", "b1x4"):
        rows = [json.loads(ln) for ln in (tmp_path / part / "log.jsonl").read_text().splitlines()]
        assert all(r["train"]["loss_dense"] > 0 for r in rows if r["type"] == "epoch")
