"""`yolos predict` / `yolos info` run in-process on temporary files with a locally saved micro model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import yolos
from yolos.cli import main
from yolos.inference import predict

NAMES = {0: "circle", 1: "square", 2: "triangle"}


@pytest.fixture(scope="module")
def micro_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "micro.safetensors"
    yolos.create_model("micro", class_names=NAMES).save(path)
    return path


def _write_images(folder, n=3):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate([(120, 160), (160, 120), (90, 200)][:n]):
        p = folder / f"img{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_predict_directory_with_a_broken_file(tmp_path, micro_path, capsys):
    paths = _write_images(tmp_path / "imgs")
    sub = tmp_path / "imgs" / "nested"
    sub.mkdir()
    broken = sub / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "imgs" / "notes.txt").write_text("ignored: not an image extension")
    out = tmp_path / "out"
    code = main(["predict", str(tmp_path / "imgs"), "--model", str(micro_path), "--threshold", "0.0",
                 "--out", str(out), "--batch-size", "2", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1  # one image failed ...
    assert "broken.jpg" in err
    report = json.loads((out / "predictions.json").read_text())
    # ... and every other image was still written.
    assert sorted(r["file"] for r in report["images"]) == sorted(str(p) for p in paths)
    assert [f["file"] for f in report["failed"]] == [str(broken)]
    model = yolos.from_pretrained(micro_path)
    for record in report["images"]:
        annotated = Image.open(out / record["annotated"])
        with Image.open(record["file"]) as src:
            assert annotated.size == src.size == (record["width"], record["height"])
        # Same detections as the Python API, in the pipeline's dict shape plus category ids.
        expected = predict(model, record["file"], threshold=0.0)[0]
        assert len(record["detections"]) == len(expected) == model.config.num_det_tokens
        for got, want, label in zip(record["detections"], expected.to_dict(), expected.labels.tolist()):
            assert got["label"] == want["label"] and got["label"] in NAMES.values()
            assert got["box"] == want["box"] and got["category_id"] == label
            assert got["score"] == pytest.approx(want["score"], abs=1e-5)


def test_predict_files_and_globs(tmp_path, micro_path, capsys):
    paths = _write_images(tmp_path / "a")
    other = _write_images(tmp_path / "b", n=1)[0]  # same stem as a/img0.jpg
    out = tmp_path / "out"
    code = main(["predict", str(tmp_path / "a" / "*.png"), str(paths[0]), str(other),
                 "--model", str(micro_path), "--out", str(out), "--top-k", "2", "--threshold", "0"])
    assert code == 0
    report = json.loads((out / "predictions.json").read_text())
    assert [r["file"] for r in report["images"]] == [str(paths[1]), str(paths[0]), str(other)]
    assert all(len(r["detections"]) == 2 for r in report["images"])
    # a/img0.jpg and b/img0.jpg collide, so every name is relative to the folder holding them all
    assert sorted(r["annotated"] for r in report["images"]) == ["a/img0.jpg", "a/img1.png", "b/img0.jpg"]
    assert all((out / r["annotated"]).is_file() for r in report["images"])
    # A pattern or path naming nothing is an error, reported by name.
    code = main(["predict", str(tmp_path / "none*.jpg"), str(tmp_path / "missing.jpg"),
                 "--model", str(micro_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "none*.jpg" in err and "missing.jpg" in err


def test_info(micro_path, capsys):
    assert main(["info", "--model", str(micro_path)]) == 0
    text = capsys.readouterr().out
    n = yolos.from_pretrained(micro_path).num_parameters()
    assert "micro" in text and f"{n:,}" in text
    assert "8x8" in text  # 128 px / 16 per side
    assert "short side 128" in text
    assert "square" in text
    assert main(["info", "--model", str(micro_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == n and info["pos_embed_grid"] == [8, 8]
    assert info["class_names"] == {str(k): v for k, v in NAMES.items()}
    # A missing checkpoint is one clear line, not a traceback.
    assert main(["info", "--model", "/nonexistent/model.safetensors"]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_defaults_without_model_or_source(tmp_path, micro_path, monkeypatch, capsys):
    import yolos.defaults as defaults

    image = _write_images(tmp_path / "assets", n=1)[0]
    monkeypatch.setattr(defaults, "DEFAULT_MODEL", micro_path)
    monkeypatch.setattr(defaults, "DEFAULT_IMAGE", image)
    out = tmp_path / "out"
    assert main(["predict", "--out", str(out), "--threshold", "0"]) == 0
    report = json.loads((out / "predictions.json").read_text())
    assert report["model"] == str(micro_path) and [r["file"] for r in report["images"]] == [str(image)]
    monkeypatch.setattr(defaults, "DEFAULT_MODEL", tmp_path / "gone.safetensors")
    assert main(["predict", "--out", str(out)]) == 2
    assert "--model" in capsys.readouterr().err
