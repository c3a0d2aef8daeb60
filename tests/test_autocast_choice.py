"""The recipes' bf16 autocast: timed one step each way when a run starts, kept only where faster,
without touching the weights, the optimizer or the random streams; a resumed run keeps it."""
import json

import pytest
import torch
from test_train_loop import TINY, make_shapes, tiny_config

from yolos.data.collate import collate_fn
from yolos.data.shapes import ShapesSpec
from yolos.data.synthetic import SyntheticShapes
from yolos.model import create_model
from yolos.train import autocast
from yolos.train.criterion import SetCriterion
from yolos.train.engine import StepParts
from yolos.train.loop import fit
from yolos.train.matcher import HungarianMatcher
from yolos.train.optim import LRSchedule, build_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


def _parts_and_batch():
    torch.manual_seed(0)
    model = create_model("micro", **TINY)
    criterion = SetCriterion(model.config.num_classes, HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2))
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=1e-4)
    parts = StepParts(model, criterion, optimizer, LRSchedule(1e-3, 1, 1e-7, 0, 1e-6, 0), torch.device("cpu"))
    images = SyntheticShapes(ShapesSpec(image_size=64), num_images=2, seed=5)
    pixels, targets = collate_fn([images[i] for i in range(2)])
    return parts, [(pixels, targets)]


def test_the_timing_steps_leave_weights_optimizer_and_random_stream_alone():
    parts, group = _parts_and_batch()
    before = {k: v.clone() for k, v in parts.model.state_dict().items()}
    rng = torch.get_rng_state()
    use, line = autocast.choose_bf16(parts, group)
    assert isinstance(use, bool) and line.startswith(f"bf16 autocast {'on' if use else 'off'}")
    assert "s in bf16 against" in line and "s in fp32" in line
    assert all(torch.equal(v, parts.model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in parts.model.parameters())
    assert not parts.optimizer.state  # never stepped
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("fp32, bf16, expected", [(1.0, 0.5, True), (1.0, 0.95, False), (1.0, 1.3, False)])
def test_bf16_is_kept_only_when_clearly_faster(monkeypatch, fp32, bf16, expected):
    parts, group = _parts_and_batch()
    monkeypatch.setattr(autocast, "step_seconds", lambda parts, group, use: bf16 if use else fp32)
    use, line = autocast.choose_bf16(parts, group)
    assert use is expected
    assert f"{bf16:.3f} s in bf16 against {fp32:.3f} s in fp32" in line


def test_a_recipe_run_records_the_choice_and_a_resumed_run_keeps_it(tmp_path, monkeypatch):
    data = make_shapes(tmp_path / "data")
    said = []
    monkeypatch.setattr(autocast, "step_seconds", lambda parts, group, use: 0.1 if use else 1.0)
    fit(tiny_config(data, tmp_path / "run", recipe="scratch", epochs=1, eval_every=0), log=said.append)
    assert any(s.startswith("bf16 autocast on:") for s in said)
    config = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])["config"]
    assert config["bf16"] is True
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert state["config"]["bf16"] is True

    def must_not_time(*a):
        raise AssertionError("a resumed run re-timed its autocast")

    monkeypatch.setattr(autocast, "step_seconds", must_not_time)
    fit(tiny_config(data, tmp_path / "run", recipe="scratch", epochs=2, eval_every=0, resume=True),
        given={"resume", "epochs"})
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["config"]["bf16"] for r in rows if r["type"] == "config"] == [True, True]


def test_an_explicit_bf16_is_never_timed(tmp_path, monkeypatch):
    data = make_shapes(tmp_path / "data")
    monkeypatch.setattr(autocast, "step_seconds", lambda *a: pytest.fail("timed although --no-bf16 was given"))
    fit(tiny_config(data, tmp_path / "run", recipe="scratch", bf16=False, epochs=1, eval_every=0))
    config = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])["config"]
    assert config["bf16"] is False
