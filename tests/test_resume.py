"""A run killed with SIGKILL after a mid-epoch checkpoint and resumed ends with the same weights
as an uninterrupted run (bit-for-bit: same data order, same augmentation seeds, same optimizer
state, one torch thread in both so float reductions happen in the same order)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from yolos.checkpoint.native import load_native
from yolos.train.config import TrainConfig
from yolos.train.loop import fit

sys.path.insert(0, str(Path(__file__).parent))
from test_train_loop import TINY, make_shapes  # noqa: E402

RUNNER = """
import json, sys, torch
torch.set_num_threads(1)
from yolos.train.config import TrainConfig
from yolos.train.loop import fit
fit(TrainConfig.from_dict(json.loads(sys.argv[1])))
"""


def _cmd(tmp_path, cfg: dict) -> list[str]:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    return [sys.executable, str(runner), json.dumps(cfg)]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1")


def _config(data, out, **kw):
    cfg = dict(data=str(data), out=str(out), model="micro", epochs=3, batch_size=2, workers=0,
               train_sizes=[48, 64], train_max_size=64, eval_size=64, progress=False, eval_every=0,
               save_every_steps=2, lr=1e-3, seed=7, model_overrides=dict(TINY, image_size=[64, 64]))
    cfg.update(kw)
    return cfg


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("batch_size, accumulate_steps", [(2, 1), (1, 2)])
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, batch_size, accumulate_steps):
    """Also with gradient accumulation: a step is then two batches, and the resumed epoch skips
    the batches of the steps done."""
    data = make_shapes(tmp_path / "ds", n=8)  # 4 steps per epoch, 12 in all; augmentation on
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    batching = dict(batch_size=batch_size, accumulate_steps=accumulate_steps)
    torch.set_num_threads(1)  # as in the runner (conftest restores nothing else we change)
    fit(TrainConfig.from_dict(_config(data, ref_out, **batching)))  # uninterrupted reference, in-process

    proc = subprocess.Popen(_cmd(tmp_path, _config(data, out, **batching)), env=_env())
    state_path = out / "state.pt"
    killed_state = None
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if state_path.exists():
                s = torch.load(state_path, weights_only=True)
                if s["step_in_epoch"] > 0 and s["epoch"] >= 1:  # a mid-epoch step checkpoint
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=30)
                    killed_state = torch.load(state_path, weights_only=True)
                    break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if killed_state is None:
        pytest.skip("the run finished before a mid-epoch checkpoint could be caught (machine too fast)")
    assert killed_state["global_step"] < 12

    subprocess.run(_cmd(tmp_path, _config(data, out, resume=True, **batching)), check=True, env=_env(), timeout=300)
    a, b = load_native(ref_out / "last.safetensors"), load_native(out / "last.safetensors")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), f"{name} differs after resume (max |diff| {(x - y).abs().max():.3g})"
    sa, sb = torch.load(ref_out / "state.pt", weights_only=True), torch.load(out / "state.pt", weights_only=True)
    assert sa["global_step"] == sb["global_step"] == 12
    for k in sa["optimizer"]["state"]:
        assert torch.equal(sa["optimizer"]["state"][k]["exp_avg_sq"], sb["optimizer"]["state"][k]["exp_avg_sq"])
    # the log reads as one run: no duplicated steps from the killed process
    epochs = [json.loads(ln)["epoch"] for ln in (out / "log.jsonl").read_text().splitlines()
              if json.loads(ln)["type"] == "epoch"]
    assert epochs == [0, 1, 2]


def test_resume_without_state_names_the_file(tmp_path):
    from yolos.errors import CheckpointError

    with pytest.raises(CheckpointError, match="state.pt"):
        fit(TrainConfig(data="unused", out=str(tmp_path / "none"), resume=True))


def test_state_file_is_weights_only_and_atomic(tmp_path):
    import random

    import numpy as np

    from yolos.train.checkpointing import atomic_torch_save, rng_state, set_rng_state

    state = rng_state()
    a = (random.random(), float(np.random.rand()), torch.rand(1).item())
    atomic_torch_save({"rng": state}, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    set_rng_state(loaded["rng"])
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == a
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temp file left behind
