"""No checkpoint can run code on load: a real malicious pickle is refused and does nothing."""
from __future__ import annotations

import argparse
import json
import pickle

import pytest
import torch

from yolos.checkpoint import from_pretrained, load_imagenet_backbone
from yolos.checkpoint.safe_io import load_pickle, read_state_dict
from yolos.errors import CheckpointError


class Payload:
    """Unpickling this calls ``open(marker, "w")``, which creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_payload_really_runs_under_plain_pickle(tmp_path):
    """Control: an unsafe unpickler does execute it (so the next tests can fail)."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps({"x": Payload(marker)})).get("x").close()
    assert marker.exists()


@pytest.mark.parametrize("name", ["evil.pth", "evil.bin"])
def test_malicious_pth_is_refused_and_never_runs(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    torch.save({"model": {"backbone.cls_token": torch.zeros(1, 1, 8)}, "x": Payload(marker)}, path)
    for load in (from_pretrained, load_pickle, read_state_dict):
        with pytest.raises(CheckpointError, match="arbitrary code") as e:
            load(path)
        assert str(path) in str(e.value)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_imagenet_backbone(None, path)
    assert not marker.exists()


def test_malicious_pytorch_model_bin_in_a_transformers_directory(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "yolos"}))
    torch.save({"vit.layernorm.weight": Payload(marker)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="arbitrary code") as e:
        from_pretrained(tmp_path)
    assert str(tmp_path / "pytorch_model.bin") in str(e.value)
    assert not marker.exists()


def test_training_checkpoint_with_args_namespace_is_fine(tmp_path):
    """DETR-family training checkpoints store argparse args next to the weights; that plain
    attribute bag is allowed, nothing else is."""
    path = tmp_path / "train.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-4), "epoch": 3}, path)
    assert load_pickle(path)["args"].lr == 1e-4
    state, meta = read_state_dict(path)
    assert list(state) == ["w"] and meta == {}


def test_garbage_files_give_a_checkpoint_error(tmp_path):
    for name in ("junk.pth", "junk.safetensors"):
        path = tmp_path / name
        path.write_bytes(b"definitely not a checkpoint")
        with pytest.raises(CheckpointError) as e:
            from_pretrained(path)
        assert str(path) in str(e.value)
