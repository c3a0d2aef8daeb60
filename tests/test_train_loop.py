"""The training loop end to end on a tiny synthetic dataset (CPU, seconds)."""
import dataclasses
import json

import pytest
import torch

from yolos.checkpoint.native import load_native
from yolos.train.config import TrainConfig
from yolos.train.data_order import ResumableSampler, SeededDataset
from yolos.train.engine import NonFiniteLossError
from yolos.train.loop import fit

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(hidden_size=32, depth=2, num_heads=2, mlp_dim=64, image_size=(64, 64), num_det_tokens=6)


def make_shapes(root, n=8, size=64, min_objects=1, max_objects=2, n_val=4):
    from yolos.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(root / "train", num_images=n, image_size=size, min_objects=min_objects,
                            max_objects=max_objects, seed=0)
    write_synthetic_dataset(root / "val", num_images=n_val, image_size=size, min_objects=min_objects,
                            max_objects=max_objects, seed=1)
    (root / "data.yaml").write_text(
        "path: .\ntrain:\n  images: train/images\n  annotations: train/annotations.json\n"
        "val:\n  images: val/images\n  annotations: val/annotations.json\n")
    return root / "data.yaml"


def tiny_config(data, out, **kw):
    base = dict(data=str(data), out=str(out), model="micro", epochs=2, batch_size=4, workers=0,
                train_sizes=[64], eval_size=64, progress=False, model_overrides=dict(TINY))
    base.update(kw)
    return TrainConfig(**base)


def test_sampler_global_batches_match_across_world_sizes():
    one = ResumableSampler(10, batch_size=4, world_size=1, seed=3)
    two = [ResumableSampler(10, batch_size=2, world_size=2, rank=r, seed=3) for r in range(2)]
    for s in [one, *two]:
        s.set_epoch(5)
    a = list(one)
    b0, b1 = list(two[0]), list(two[1])
    assert len(a) == 8 and len(b0) == len(b1) == 4  # drop_last: 2 steps of global batch 4
    for step in range(2):
        assert sorted(a[4 * step:4 * step + 4]) == sorted(b0[2 * step:2 * step + 2] + b1[2 * step:2 * step + 2])
    one.set_epoch(5, start_batch=1)
    assert list(one) == a[4:]  # resume skips the batches already done
    one.set_epoch(6)
    assert list(one) != a  # a new permutation each epoch


def test_seeded_dataset_is_a_function_of_epoch_and_index():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.rand(2)

    ds = SeededDataset(Noisy(), seed=1, repeat=2)
    assert len(ds) == 6
    first = ds[4]
    torch.rand(5)  # global RNG use in between must not matter
    assert torch.equal(ds[4], first) and not torch.equal(ds[1], first)
    ds.epoch = 1
    assert not torch.equal(ds[4], first)
    # item i of epoch e draws the CPU stream seeded by (seed, e, i) as SeededDataset documents
    ds.epoch = 0
    s = (1 * 1_000_003 + 0 * 10_007 + 4) % 2**31
    assert torch.equal(first, torch.rand(2, generator=torch.Generator().manual_seed(s)))
    before = torch.get_rng_state()
    ds[2]
    assert torch.equal(torch.get_rng_state(), before)  # and leaves the global stream as it was


def test_seeded_dataset_seeds_python_and_numpy_draws_too():
    import random

    import numpy as np

    class Drawing(torch.utils.data.Dataset):  # a transform drawing from the global generators
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return random.random(), float(np.random.rand())

    ds = SeededDataset(Drawing(), seed=3)
    first = ds[2]
    random.random(), np.random.rand(5)  # draws in between must not matter
    assert ds[2] == first and ds[1] != first
    s = (3 * 1_000_003 + 2) % 2**31
    assert first == (random.Random(s).random(), float(np.random.RandomState(s).rand()))
    state = random.getstate()
    ds[0]
    assert random.getstate() == state  # python's stream is restored (numpy's is left seeded)


def test_fit_writes_logs_checkpoints_and_learns(tmp_path):
    data = make_shapes(tmp_path / "ds", n=4)
    out = tmp_path / "run"
    # 4 images repeated: overfitting must drive the loss down within a few epochs.
    cfg = tiny_config(data, out, epochs=6, lr=1e-3, repeat=4, log_every_steps=2, save_every_steps=3,
                      eval_every=3, augment=False)
    summary = fit(cfg)
    rows = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["type"] == "epoch"]
    steps = [r for r in rows if r["type"] == "step"]
    assert [r["epoch"] for r in epochs] == list(range(6))
    assert [r["global_step"] for r in steps] == list(range(2, 25, 2))  # 4 steps x 6 epochs
    # the resolved configuration heads the log; the caller's config is left as it was (immutable)
    assert rows[0]["type"] == "config" and rows[0]["config"]["lr"] == 1e-3
    assert rows[0]["config"]["variant"] == "micro" and rows[0]["config"]["warmup_steps"] == 0
    assert cfg.variant is None and cfg.warmup_steps is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    assert epochs[-1]["train"]["loss"] < 0.8 * epochs[0]["train"]["loss"]
    assert epochs[0]["val"] is None and epochs[2]["val"] is not None and "AP50" in epochs[5]["val"]
    # lr per epoch follows the cosine schedule (epochs 0 and 1 at the base lr)
    assert epochs[0]["train"]["lr"] == pytest.approx(1e-3) and epochs[1]["train"]["lr"] == pytest.approx(1e-3)
    assert epochs[5]["train"]["lr"] < epochs[2]["train"]["lr"]
    for name in ("best.safetensors", "last.safetensors", "metrics.png", "state.pt"):
        assert (out / name).is_file(), name
    last = load_native(out / "last.safetensors")
    assert last.config.num_det_tokens == 6 and last.config.num_classes == 3
    assert last.config.class_names == {0: "square", 1: "circle", 2: "triangle"}
    state = torch.load(out / "state.pt", weights_only=True)  # plain containers and tensors only
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (6, 0, 24)
    for k, v in last.state_dict().items():
        assert torch.equal(v, state["model"][k]), k
    assert summary["best_ap"] == max(r["val"]["AP"] for r in epochs if r["val"])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from yolos.train import criterion as C

    forward = C.SetCriterion.forward
    calls = {"n": 0}

    def poisoned(self, outputs, targets, normalizers=None):
        out = forward(self, outputs, targets, normalizers)
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 1 (2 steps per epoch), its first step
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(C.SetCriterion, "forward", poisoned)
    data = make_shapes(tmp_path / "ds", n=8)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 0 .*global step 2.*last good checkpoint"):
        fit(tiny_config(data, out, epochs=3, eval_every=0))
    state = torch.load(out / "state.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 0, 2)
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_detached_det_tokens_stay_at_init_and_grad_checkpointing_trains(tmp_path):
    data = make_shapes(tmp_path / "ds", n=4)
    out = tmp_path / "run"
    fit(tiny_config(data, out, epochs=1, eval_every=0, detach_det_tokens=True, grad_checkpointing=True))
    state = torch.load(out / "state.pt", weights_only=True)
    torch.manual_seed(42)  # fit seeds with cfg.seed before building the model
    from yolos.model import create_model

    init = create_model("micro", num_classes=3, class_names={0: "square", 1: "circle", 2: "triangle"}, **TINY)
    assert torch.equal(state["model"]["det_tokens"], init.det_tokens.detach())
    assert not torch.equal(state["model"]["pos_embed"], init.pos_embed.detach())


def test_grad_checkpointing_gives_the_same_gradients():
    from yolos.model import create_model

    model = create_model("micro", num_classes=3, **TINY).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    (out["pred_boxes"].sum() + out["logits"].sum()).backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.grad_checkpointing = True
    out = model(x)
    (out["pred_boxes"].sum() + out["logits"].sum()).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], rtol=1e-5, atol=1e-7)


def test_bf16_autocast_trains_with_fp32_master_weights(tmp_path):
    data = make_shapes(tmp_path / "ds", n=4)
    out = tmp_path / "run"
    fit(tiny_config(data, out, epochs=1, eval_every=0, bf16=True))
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["model"]["blocks.0.attn.qkv.weight"].dtype == torch.float32
    rows = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert torch.isfinite(torch.tensor(rows[-1]["train"]["loss"]))


def test_the_iou_aware_class_loss_trains_the_same_network(tmp_path):
    """class_loss="iou" is training only: the trained model has the same parameters (names and
    shapes) as with cross-entropy, different values, and exports to the same ONNX graph (the
    same nodes in the same order)."""
    onnx = pytest.importorskip("onnx")
    from yolos.export import export_model

    data = make_shapes(tmp_path / "ds", n=4)
    models, graphs = {}, {}
    for loss in ("ce", "iou"):
        fit(tiny_config(data, tmp_path / loss, epochs=1, lr=1e-3, class_loss=loss, augment=False))
        models[loss] = load_native(tmp_path / loss / "last.safetensors")
        path = export_model(models[loss], tmp_path / f"{loss}.onnx")
        graphs[loss] = [(n.op_type, list(n.input), list(n.output)) for n in onnx.load(str(path)).graph.node]
        rows = [json.loads(ln) for ln in (tmp_path / loss / "log.jsonl").read_text().splitlines()]
        assert rows[0]["config"]["class_loss"] == loss  # saved with the run
    ce, iou = models["ce"].state_dict(), models["iou"].state_dict()
    assert {k: v.shape for k, v in ce.items()} == {k: v.shape for k, v in iou.items()}
    assert not torch.equal(ce["class_head.layers.2.weight"], iou["class_head.layers.2.weight"])
    assert graphs["ce"] == graphs["iou"]
