"""Two CPU processes under torchrun (gloo) end with the same parameters as one process with the
same global batch.

Why equal: the sampler gives rank r the positions r::2 of the epoch's permutation, so global step
s covers the same 4 images in both runs; the criterion divides the box losses by the all-reduced
box count over the world size, and DDP averages the gradients over ranks, so the gradient is
the gradient of the 1-process loss. The class loss is a weighted mean per rank (no-object weight
0.1), which equals the global weighted mean only when every rank has the same number of boxes:
every image here has exactly 2 objects. No augmentation and one image size, so no padding differs.

Why not bit-exact: batch 2 vs 4 changes how matmuls block their reductions and the all-reduce adds
the two halves of each gradient in another order: float32 rounding (~1e-7 relative) per op. AdamW
normalises each gradient by sqrt(v) + 1e-8, so a gradient that is itself near rounding level can
turn a ~1e-7 absolute difference into a visible fraction of an update. Measured: max 1.7e-6 after
6 steps. We allow 2e-5 absolute: 2% of one AdamW update (lr = 1e-3), while a different global
batch (1 process at batch 2) moves the weights by more than 50x that, and a wrong loss
normalisation (per-rank num_boxes doubles the box-loss gradient) or data split would too.
"""
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

ATOL = 2e-5

RUNNER = """
import json, sys, torch
torch.set_num_threads(1)
from yolos.train.config import TrainConfig
from yolos.train.loop import fit
fit(TrainConfig.from_dict(json.loads(sys.argv[1])))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(data, out, batch_size, **kw):
    cfg = dict(data=str(data), out=str(out), model="micro", epochs=2, batch_size=batch_size, workers=0,
               train_sizes=[64], eval_size=64, augment=False, progress=False, eval_every=2, lr=1e-3,
               seed=3, device="cpu", model_overrides=dict(TINY, image_size=[64, 64]))
    cfg.update(kw)
    return cfg


pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    data = make_shapes(tmp_path / "ds", n=12, min_objects=2, max_objects=2, n_val=4)
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    ddp_out, one_out = tmp_path / "ddp", tmp_path / "one"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(runner), json.dumps(_config(data, ddp_out, 2))]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    torch.set_num_threads(1)
    fit(TrainConfig.from_dict(_config(data, one_out, 4)))

    a, b = load_native(one_out / "last.safetensors"), load_native(ddp_out / "last.safetensors")
    worst = 0.0
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        worst = max(worst, (x - y).abs().max().item())
        torch.testing.assert_close(y, x, rtol=0, atol=ATOL, msg=f"{name} differs between 1 and 2 processes")
    print(f"max |1-process - 2-process| over all parameters: {worst:.3g}")
    # The tolerance discriminates: one process at batch 2 (another global batch) lands far away.
    fit(TrainConfig.from_dict(_config(data, tmp_path / "bs2", 2, eval_every=0)))
    c = load_native(tmp_path / "bs2" / "last.safetensors")
    far = max((x - y).abs().max().item() for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    print(f"max |batch 4 - batch 2|: {far:.3g}")
    assert far > 50 * ATOL, far
    rows = [json.loads(ln) for ln in (ddp_out / "log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in rows].count("config") == 1  # rank 0 writes, once
    rows = [r for r in rows if r["type"] == "epoch"]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[-1]["train"]["steps"] == 3  # 12 images / global batch 4
    one_rows = [json.loads(ln) for ln in (one_out / "log.jsonl").read_text().splitlines()]
    one_rows = [r for r in one_rows if r["type"] == "epoch"]
    # the losses (averaged over ranks) agree with the single process too
    assert rows[0]["train"]["loss"] == pytest.approx(one_rows[0]["train"]["loss"], rel=1e-4)
    # sharded evaluation gathered from both ranks scored every val image
    assert rows[-1]["val"] is not None and one_rows[-1]["val"] is not None


def test_training_only_groups_train_the_same_under_two_processes(tmp_path):
    """--det-groups' tokens and --dense-aux's head live outside DDP's wrapper: their gradients
    are averaged over ranks by hand (yolos.distributed.average_gradients). Without that each rank
    would step them on half the batch and the two processes would end far from one (and from
    each other)."""
    data = make_shapes(tmp_path / "ds", n=8, min_objects=2, max_objects=2, n_val=2)
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    cfg = dict(epochs=1, det_groups=2, dense_aux=1.0, eval_every=0)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(runner), json.dumps(_config(data, tmp_path / "ddp", 2, **cfg))]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.set_num_threads(1)
    fit(TrainConfig.from_dict(_config(data, tmp_path / "one", 4, **cfg)))
    one, two = (torch.load(tmp_path / d / "state.pt", weights_only=True) for d in ("one", "ddp"))
    assert one["global_step"] == two["global_step"] == 2
    for part in ("model", "extra_tokens"):
        for name, x in one[part].items():
            torch.testing.assert_close(two[part][name], x, rtol=0, atol=ATOL, msg=f"{part} {name}")
