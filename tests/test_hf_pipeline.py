"""``save_pretrained`` writes a folder that transformers uses as it is: its object-detection
pipeline and Auto classes load it, and the pipeline's detections are ``yolos predict``'s."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch
from PIL import Image

import yolos
from yolos.defaults import DEFAULT_IMAGE, DEFAULT_MODEL

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = yolos.from_pretrained(DEFAULT_MODEL)
    model.config = model.config.replace(category_ids=[7, 8, 30])  # a dataset's own ids travel too
    folder = tmp_path_factory.mktemp("hf") / "bundled"
    model.save_pretrained(folder)
    return model, folder


def test_the_folder_is_complete(saved):
    model, folder = saved
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "preprocessor_config.json"}
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    assert pre["size"] == {"shortest_edge": 128, "longest_edge": 128}  # the model's evaluation size
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "square", "1": "circle", "2": "triangle"}
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    assert type(processor).__name__.startswith("YolosImageProcessor")
    auto = transformers.AutoModelForObjectDetection.from_pretrained(folder)
    assert type(auto).__name__ == "YolosForObjectDetection" and auto.config.id2label[1] == "circle"


@pytest.mark.parametrize("threshold", [0.5, 0.1])
def test_the_pipeline_gives_yolos_predicts_detections(saved, tmp_path, cats_png, threshold):
    model, folder = saved
    pipe = transformers.pipeline("object-detection", model=str(folder), device="cpu")
    # the bundled example (384 px, resized to 128) and a 640x480 photo (resized to 128x96)
    for image in (DEFAULT_IMAGE, cats_png):
        theirs = pipe(str(image), threshold=threshold)
        w, h = Image.open(image).size
        for d in theirs:  # yolos clips boxes to the image; the pipeline does not
            b = d["box"]
            b.update(xmin=min(max(b["xmin"], 0), w), xmax=min(max(b["xmax"], 0), w),
                     ymin=min(max(b["ymin"], 0), h), ymax=min(max(b["ymax"], 0), h))
        ours = model.predict(image, threshold=threshold)[0].to_dict()
        assert len(ours) == len(theirs) > 0
        key = lambda d: (-d["score"], d["box"]["xmin"], d["box"]["ymin"])  # noqa: E731
        for a, b in zip(sorted(ours, key=key), sorted(theirs, key=key)):
            assert a["label"] == b["label"] and a["box"] == b["box"]
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_loading_it_back_keeps_ids_and_weights(saved):
    model, folder = saved
    back = yolos.from_pretrained(folder)
    assert back.config.category_ids == [7, 8, 30] and back.config.class_names == model.config.class_names
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(back(x)["logits"], model(x)["logits"])


def test_the_hub_advice_names_a_command_that_exists():
    """The error for an unreachable hub says `hf download ...`: the command huggingface_hub
    installs today (its old `huggingface-cli` is gone)."""
    hf = shutil.which("hf")
    assert hf is not None
    proc = subprocess.run([hf, "download", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--local-dir" in proc.stdout
