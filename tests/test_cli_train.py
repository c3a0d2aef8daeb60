"""``yolos train`` / ``yolos val`` through the CLI entry point on tiny synthetic data."""
import json
import sys
from pathlib import Path

import pytest
import torch

from yolos.checkpoint.native import load_native
from yolos.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_train_loop import make_shapes  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


COMMON = ["--model", "micro", "--batch-size", "4", "--workers", "0", "--train-sizes", "64",
          "--eval-size", "64", "--no-progress"]


def test_train_then_val_scores_like_pycocotools(tmp_path, capsys):
    data = make_shapes(tmp_path / "ds", n=8, n_val=4)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--epochs", "1", "--out", str(out), *COMMON]) == 0
    assert "done: best AP" in capsys.readouterr().out
    assert (out / "best.safetensors").is_file() and (out / "log.jsonl").is_file()

    ev = tmp_path / "eval"
    assert main(["val", "--model", str(out / "best.safetensors"), "--data", str(data), "--eval-size", "64",
                 "--out", str(ev), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    stats = json.loads((ev / "stats.json").read_text())
    results = json.loads((ev / "results.json").read_text())
    assert f"AP50       {stats['AP50']:.4f}" in printed
    # every [DET] prediction of every val image goes to COCO eval (threshold 0)
    assert len(results) == 4 * 10 and {r["category_id"] for r in results} <= {1, 2, 3}
    # independent scorer: pycocotools on the written results
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(tmp_path / "ds" / "val" / "annotations.json"))
    e = COCOeval(gt, gt.loadRes(results), "bbox")
    e.evaluate()
    e.accumulate()
    e.summarize()
    assert stats["AP"] == pytest.approx(e.stats[0], abs=1e-4)
    assert stats["AP50"] == pytest.approx(e.stats[1], abs=1e-4)
    assert stats["AR100"] == pytest.approx(e.stats[8], abs=1e-4)


def test_fine_tune_from_a_yolos_checkpoint_with_other_classes(tmp_path):
    from yolos import create_model

    src = create_model("micro", num_classes=5, class_names={i: f"c{i}" for i in range(5)})
    src.save(tmp_path / "src.safetensors")
    data = make_shapes(tmp_path / "ds", n=4, n_val=4)
    out = tmp_path / "run"
    # lr 1e-12: the weights stay where they started, so we can see where that was
    assert main(["train", "--data", str(data), "--epochs", "1", "--out", str(out), "--lr", "1e-12",
                 "--eval-every", "0", "--init", str(tmp_path / "src.safetensors"), *COMMON]) == 0
    m = load_native(out / "last.safetensors")
    assert m.config.num_classes == 3 and m.config.class_names == {0: "square", 1: "circle", 2: "triangle"}
    assert m.class_head.layers[-1].weight.shape == (4, 128)
    ref = src.state_dict()
    for k, v in m.state_dict().items():
        if not k.startswith("class_head"):
            torch.testing.assert_close(v, ref[k], rtol=0, atol=1e-8, msg=k)


def _deit_micro(path: Path) -> dict:
    """A DeiT-style state dict for the micro shape (4x4 pretraining grid, 1000-class head), saved."""
    from yolos.model import create_model

    donor = create_model("micro")
    deit = {k: v.clone() for k, v in donor.state_dict().items()
            if k.startswith(("blocks.", "patch_embed.", "norm.")) or k == "cls_token"}
    deit["pos_embed"] = torch.randn(1, 1 + 16, 128) * 0.02
    deit["head.weight"] = torch.randn(1000, 128)
    deit["head.bias"] = torch.zeros(1000)
    torch.save({"model": deit}, path)
    return deit


def test_init_from_an_imagenet_vit_checkpoint(tmp_path):
    deit = _deit_micro(tmp_path / "deit_micro.pth")
    data = make_shapes(tmp_path / "ds", n=4, n_val=4)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--epochs", "1", "--out", str(out), "--lr", "1e-12",
                 "--eval-every", "0", "--init", str(tmp_path / "deit_micro.pth"), *COMMON]) == 0
    m = load_native(out / "last.safetensors")
    assert m.config.num_classes == 3
    for k in ("blocks.0.attn.qkv.weight", "blocks.3.mlp.fc2.bias", "patch_embed.proj.weight", "cls_token"):
        torch.testing.assert_close(m.state_dict()[k], deit[k], rtol=0, atol=1e-8, msg=k)


def test_resume_without_a_state_is_a_one_line_error(tmp_path, capsys):
    data = make_shapes(tmp_path / "ds", n=4, n_val=4)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "nothing"), "--resume", *COMMON])
    assert code == 2
    assert "state.pt" in capsys.readouterr().err


def test_every_train_option_is_a_config_field():
    """The parser is generated from TrainConfig's fields and the config is built back from the
    parsed options by name (cli.train.config_from_args): every field with an option round-trips."""
    import argparse
    import dataclasses

    from yolos.cli import build_parser
    from yolos.cli.train import _negated, config_from_args
    from yolos.train.config import TrainConfig

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {a.dest for a in sub.choices["train"]._actions} - {"help"}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    negated = _negated()
    assert negated == {"no_augment": "augment", "no_progress": "progress"}
    assert options - fields == {"max_pixels"} | set(negated)  # max_pixels is process-wide, not the run's
    assert fields - options == {"model_overrides", "variant"} | set(negated.values())  # not options
    args = build_parser().parse_args(["train", "--data", "d.yaml", "--lr", "0.002", "--no-augment",
                                      "--anchor-matching", "7", "--train-sizes", "96,128"])
    cfg, given = config_from_args(args)
    assert (cfg.lr, cfg.augment, cfg.progress, cfg.anchor_matching, cfg.train_sizes) == (0.002, False, True, 7.0, [96, 128])
    assert given == {"data", "lr", "augment", "anchor_matching", "train_sizes"}  # what a resumed run may take


@pytest.mark.parametrize("extra, message", [
    ([], "--freeze 1: only with --init"),
    (["--init", "bundled"], "--freeze 9: the model has 4 blocks"),
])
def test_freeze_is_refused_in_one_line_without_a_checkpoint_or_past_its_depth(tmp_path, capsys, extra, message):
    data = make_shapes(tmp_path / "ds", n=4, n_val=4)
    freeze = "9" if extra else "1"
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--freeze", freeze, "--epochs", "1",
                 *extra, *COMMON])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run" / "state.pt").exists()


def test_freeze_keeps_an_imagenet_backbones_lower_blocks_and_says_the_det_tokens_stay_random(tmp_path, capsys):
    deit = _deit_micro(tmp_path / "deit_micro.pth")
    data = make_shapes(tmp_path / "ds", n=4, n_val=4)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--epochs", "1", "--out", str(out), "--lr", "1e-2", "--freeze", "2",
                 "--eval-every", "0", "--init", str(tmp_path / "deit_micro.pth"), *COMMON]) == 0
    assert "the [DET] tokens are new to this backbone and stay at their random init" in capsys.readouterr().out
    got = load_native(out / "last.safetensors").state_dict()
    for k in ("blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias", "patch_embed.proj.weight", "cls_token"):
        assert torch.equal(got[k], deit[k]), k
    assert not torch.equal(got["blocks.3.mlp.fc2.weight"], deit["blocks.3.mlp.fc2.weight"])
