"""What people fine-tuning detectors expect of a run: an EMA of the weights, early stopping, a
wall-clock budget, results.csv, TensorBoard when it is installed."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from test_train_loop import TINY, make_shapes

from yolos.checkpoint.native import load_native
from yolos.model import create_model
from yolos.train.config import TrainConfig
from yolos.train.console import StepReporter
from yolos.train.ema import ModelEMA
from yolos.train.loop import TrainingInterrupted, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), model="micro", epochs=3, batch_size=2, workers=0,
                train_sizes=[64], eval_size=64, progress=False, model_overrides=dict(TINY), seed=3, lr=1e-3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes"), n=6, n_val=3)


def test_ema_follows_the_ramped_decay_by_hand():
    model = create_model("micro", **TINY)
    ema = ModelEMA(model, decay=0.9, tau=2.0)
    start = model.det_tokens.detach().clone()
    steps = []
    for _ in range(2):
        with torch.no_grad():
            model.det_tokens.add_(1.0)
        ema.update(model)
        steps.append(model.det_tokens.detach().clone())
    d1, d2 = 0.9 * (1 - math.exp(-1 / 2)), 0.9 * (1 - math.exp(-2 / 2))
    expected = d2 * (d1 * start + (1 - d1) * steps[0]) + (1 - d2) * steps[1]
    assert torch.allclose(ema.module.det_tokens, expected, atol=1e-6)
    assert not ema.module.det_tokens.requires_grad


def test_ema_is_evaluated_saved_and_resumed_exactly(data, tmp_path):
    straight = fit(_cfg(data, tmp_path / "a", ema=True))
    assert straight["val"] is not None
    state = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    last = load_native(tmp_path / "a" / "last.safetensors").state_dict()
    assert state["ema"]["updates"] == state["global_step"] > 0
    assert all(torch.equal(last[k], state["ema"]["weights"][k]) for k in last)  # last is the average
    assert not all(torch.equal(last[k], state["model"][k]) for k in last)
    resumed = _interrupted_at_step_4_then_resumed(data, tmp_path / "b", ema=True)
    for k, v in state["ema"]["weights"].items():
        assert torch.equal(v, resumed["ema"]["weights"][k]), k


def _interrupted_at_step_4_then_resumed(data: Path, out: Path, **kw) -> dict:
    """Ctrl-C in the middle of the second epoch, then ``--resume``: the final training state."""
    calls = []
    real_step = StepReporter.step

    def interrupt_at_step_4(self, values, lr):
        real_step(self, values, lr)
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StepReporter, "step", interrupt_at_step_4)
        with pytest.raises(TrainingInterrupted):
            fit(_cfg(data, out, **kw))
    assert torch.load(out / "state.pt", weights_only=True)["global_step"] == 4
    fit(_cfg(data, out, resume=True, **kw), given={"resume"})
    return torch.load(out / "state.pt", weights_only=True)


def test_layer_decay_trains_each_depth_at_its_rate_and_resumes_exactly(data, tmp_path):
    fit(_cfg(data, tmp_path / "a", layer_decay=0.5))
    state = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    assert state["config"]["layer_decay"] == 0.5
    groups = state["optimizer"]["param_groups"]
    top = max(g["lr"] for g in groups)
    # TINY has depth 2: the embeddings at 0.5^3, block 0 at 0.5^2, block 1 at 0.5, norm and heads at 1
    assert sorted({round(g["lr"] / top, 9) for g in groups}) == [0.125, 0.25, 0.5, 1.0]
    assert all(g["lr"] == pytest.approx(top * g["lr_scale"]) for g in groups)
    resumed = _interrupted_at_step_4_then_resumed(data, tmp_path / "b", layer_decay=0.5)
    for k, v in state["model"].items():
        assert torch.equal(v, resumed["model"][k]), k


def test_patience_stops_when_ap_stops_improving(data, tmp_path, capsys):
    summary = fit(_cfg(data, tmp_path / "p", lr=1e-12, epochs=8, patience=2))  # lr ~0: AP never improves
    assert summary["stopped"] and "early stop" in summary["stopped"]
    epochs = [json.loads(ln) for ln in (tmp_path / "p" / "log.jsonl").read_text().splitlines()]
    assert len([r for r in epochs if r.get("type") == "epoch"]) == 3  # the first, then two without gain


def test_a_time_budget_ends_with_a_final_evaluation(data, tmp_path):
    # eval_every beyond the run: no epoch is an evaluation epoch, so the one evaluation is the budget's
    called = time.time()
    summary = fit(_cfg(data, tmp_path / "t", epochs=200, eval_every=1000, time="3s"))
    assert summary["stopped"] and "time budget 3s reached" in summary["stopped"]
    rows = [json.loads(ln) for ln in (tmp_path / "t" / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r.get("type") == "epoch"]
    ended_in = int(re.search(r"after epoch (\d+)", summary["stopped"]).group(1))  # 1-based, as logged
    # the message names the last logged epoch (0-based in the log), and the budget cut the 200 short
    assert ended_in == len(epochs) == epochs[-1]["epoch"] + 1 < 200
    assert epochs[-1]["val"] is not None
    assert all(r["val"] is None for r in epochs[:-1])
    # The log's own clock, not the stop message: the run went on while another epoch fitted in 3 s
    # (the epoch before the last ended within 3 s of the first, which began after the budget's start),
    # and stopped only when the next would not (time spent by the stop, plus one more epoch, reaches 3 s).
    assert len(epochs) >= 2, "a tiny epoch takes well under a second"
    assert epochs[-2]["time"] - epochs[0]["time"] < 3.0 + 0.5
    assert (epochs[-1]["time"] - called) + (epochs[-1]["time"] - epochs[-2]["time"]) >= 3.0
    state = torch.load(tmp_path / "t" / "state.pt", weights_only=True)
    assert state["global_step"] == summary["global_step"]
    # a resumed run continues from there, within its own new budget
    more = fit(_cfg(data, tmp_path / "t", epochs=200, eval_every=1000, time="2s", resume=True),
               given={"resume", "time"})
    assert more["global_step"] > summary["global_step"]


def test_results_csv_has_one_row_per_epoch(data, tmp_path):
    fit(_cfg(data, tmp_path / "r", eval_every=2))
    rows = list(csv.DictReader((tmp_path / "r" / "results.csv").open()))
    log = [json.loads(ln) for ln in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in log if r.get("type") == "epoch"]
    assert [int(r["epoch"]) for r in rows] == [r["epoch"] for r in epochs] == [0, 1, 2]
    assert float(rows[0]["loss"]) == pytest.approx(epochs[0]["train"]["loss"], rel=1e-5)
    assert rows[0]["AP"] == "" and float(rows[1]["AP"]) == pytest.approx(epochs[1]["val"]["AP"], abs=1e-6)
    assert float(rows[2]["lr"]) == pytest.approx(epochs[2]["train"]["lr"], rel=1e-5)


def test_tensorboard_is_optional(data, tmp_path, monkeypatch):
    import importlib.util

    from yolos.train import runlog

    said = []
    real = importlib.util.find_spec
    monkeypatch.setattr(runlog.importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard"
                        else real(name, *a))
    fit(_cfg(data, tmp_path / "tb", epochs=1, tensorboard=True), log=said.append)
    assert any("tensorboard package is not installed" in s for s in said)
    assert not (tmp_path / "tb" / "tensorboard").exists()


def test_finetune_from_a_checkpoint_on_a_rendered_split(tmp_path):
    """--init with a synthetic train split: its classes meet the checkpoint's by name too."""
    from yolos.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "val", 3, 64, 1, 2, shapes=("star", "circle"), seed=2)
    (tmp_path / "data.yaml").write_text(
        "train: {synthetic: {num_images: 4, image_size: 64, shapes: [star, circle], seed: 1}}\n"
        "val: {images: val/images, annotations: val/annotations.json}\n")
    said = []
    fit(TrainConfig(data=str(tmp_path / "data.yaml"), out=str(tmp_path / "run"), init="bundled", recipe="finetune",
                    epochs=1, batch_size=2, workers=0, progress=False, train_sizes=[64], eval_size=64),
        log=said.append)
    assert any("1 of the checkpoint's classes kept by name (circle), 1 new (star)" in s for s in said), said
    model = load_native(tmp_path / "run" / "last.safetensors")
    assert model.config.class_names == {0: "star", 1: "circle"} and model.config.category_ids == [1, 2]


def test_an_interrupted_run_leaves_its_plot_up_to_date(data, tmp_path, monkeypatch):
    """metrics.png is redrawn at most every 30 s while training, and always when the run stops."""
    from yolos.train import runlog

    drawn = []
    monkeypatch.setattr(runlog, "plot_metrics", lambda records, path: drawn.append(len(records)))
    calls = []
    real_step = StepReporter.step

    def interrupt_in_epoch_3(self, values, lr):
        real_step(self, values, lr)
        calls.append(1)
        if len(calls) == 7:  # 3 steps per epoch: two epochs logged, the third under way
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(StepReporter, "step", interrupt_in_epoch_3)
    with pytest.raises(TrainingInterrupted):
        fit(_cfg(data, tmp_path / "i", epochs=5, eval_every=0))
    assert drawn[0] == 1 and drawn[-1] == 2  # the first epoch's plot, then the catch-up on the interrupt


def test_class_loss_weight_weighs_the_class_term_of_the_logged_total(data, tmp_path):
    fit(_cfg(data, tmp_path / "w", epochs=1, class_loss_weight=3.0, eval_every=0))
    rows = [json.loads(ln) for ln in (tmp_path / "w" / "log.jsonl").read_text().splitlines()]
    assert rows[0]["config"]["class_loss_weight"] == 3.0
    t = next(r for r in rows if r.get("type") == "epoch")["train"]
    # DETR's total with ce_loss_coef 3: means of a linear sum are the sum of the means
    assert t["loss"] == pytest.approx(3 * t["loss_ce"] + 5 * t["loss_bbox"] + 2 * t["loss_giou"], rel=1e-4)
    assert t["loss"] > t["loss_ce"] + 5 * t["loss_bbox"] + 2 * t["loss_giou"] + 1e-3


def test_a_finetune_keeps_fewer_det_tokens_without_the_checkpoints_anchors_and_resumes_exactly(data, tmp_path):
    """--num-det-tokens below the checkpoint's: the most matched tokens are kept (the choice:
    tests/test_token_choice.py), the recipe's anchor matching (the checkpoint's, 10 here) is not
    carried over, and the model written has the kept count."""
    from yolos.checkpoint.native import save_native

    start = create_model("micro", **TINY)
    start.config = start.config.replace(anchor_matching=10.0)
    save_native(start, tmp_path / "six.safetensors")
    kw = dict(init=str(tmp_path / "six.safetensors"), recipe="finetune", num_det_tokens=3, bf16=False)
    said = []
    fit(_cfg(data, tmp_path / "a", **kw), log=said.append)
    assert any("keeping 3 of the checkpoint's 6" in s for s in said), said
    state = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    assert state["config"]["anchor_matching"] == 0.0 and state["model"]["det_tokens"].shape == (1, 3, 32)
    last = load_native(tmp_path / "a" / "last.safetensors")
    assert (last.config.num_det_tokens, last.config.anchor_matching) == (3, 0.0)
    assert last.pos_embed.shape[1] == 1 + 4 * 4 + 3
    resumed = _interrupted_at_step_4_then_resumed(data, tmp_path / "b", **kw)
    for k, v in state["model"].items():
        assert torch.equal(v, resumed["model"][k]), k


def test_a_finetune_with_frozen_layers_keeps_them_and_resumes_exactly(data, tmp_path):
    """--freeze 1: the embeddings and block 0 leave the run as the checkpoint had them (in the
    weights and in their average), the rest trains, and a Ctrl-C'd run resumes to the same state."""
    from yolos.checkpoint.native import save_native

    start = create_model("micro", **TINY)
    save_native(start, tmp_path / "start.safetensors")
    kw = dict(init=str(tmp_path / "start.safetensors"), recipe="finetune", freeze=1, bf16=False)
    said = []
    fit(_cfg(data, tmp_path / "a", **kw), log=said.append)
    assert any(s.startswith("frozen: the embeddings and block 0 (") for s in said), said
    state = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    before = start.state_dict()
    frozen = {k for k in before if k.startswith(("blocks.0.", "patch_embed."))
              or k in ("cls_token", "pos_embed", "det_tokens")}
    for k in frozen:
        assert torch.equal(state["model"][k], before[k]) and torch.equal(state["ema"]["weights"][k], before[k]), k
    assert all(not torch.equal(state["model"][k], before[k]) for k in before if k.startswith("blocks.1."))
    resumed = _interrupted_at_step_4_then_resumed(data, tmp_path / "b", **kw)
    for k, v in state["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
