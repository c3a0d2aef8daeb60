"""The third hostile probe: the dataset readers, the writers and the Python API (issue: nothing lost,
nothing hung, round three). Each case is what a hostile or careless user did, and what must happen."""
from __future__ import annotations

import base64
import io
import json
import os
import resource
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import yolos
from yolos.cli import main
from yolos.data.dataset_config import resolve_dataset
from yolos.data.synthetic import write_synthetic_dataset
from yolos.defaults import DEFAULT_IMAGE

pytestmark = pytest.mark.usefixtures("one_thread")


def _err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _voc(root: Path, n: int = 2) -> Path:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (64, 48)).save(root / "JPEGImages" / f"v{i}.jpg")
        (root / "Annotations" / f"v{i}.xml").write_text(
            f"<annotation><filename>v{i}.jpg</filename><object><name>cat</name><bndbox><xmin>2</xmin>"
            f"<ymin>2</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>")
    (root / "ImageSets/Main/train.txt").write_text("v0\n")
    (root / "ImageSets/Main/val.txt").write_text("v1\n")
    return root


# ----------------------------------------------------------------------------- hangs and memory
def test_entity_expansion_is_refused_at_once(tmp_path, capsys):
    voc = _voc(tmp_path / "voc")
    levels = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 7))
    (voc / "Annotations" / "v0.xml").write_text(
        f'<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY e0 "xxxxxxxxxx">{levels}]>'
        f"<annotation><filename>v0.jpg</filename><object><name>&e6;</name></object></annotation>")
    assert (voc / "Annotations" / "v0.xml").stat().st_size < 1000  # 10^7 characters once expanded
    started = time.monotonic()
    assert main(["data", "check", str(voc)]) == 1
    assert time.monotonic() - started < 10
    assert "entity" in capsys.readouterr().out


def test_a_file_of_newlines_is_read_in_linear_time(tmp_path, capsys):
    voc = _voc(tmp_path / "voc")
    (voc / "Annotations" / "v0.xml").write_text("<annotation><filename>v0.jpg</filename><object><name>cat"
                                                + "\n" * 3_900_000 + "</name></object></annotation>")
    started = time.monotonic()
    main(["data", "check", str(voc), "--headers-only"])
    assert time.monotonic() - started < 15
    capsys.readouterr()


def test_huge_list_files_are_refused_from_their_size(tmp_path, capsys):
    voc = _voc(tmp_path / "voc")
    with open(voc / "ImageSets/Main/val.txt", "wb") as f:
        f.truncate(1_500_000_000)  # sparse: 1.5 GB that take no disk
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["data", "check", str(voc)]) == 2
    assert "list file larger than" in _err(capsys) and "val.txt" in capsys.readouterr().err + "val.txt"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing read


# ----------------------------------------------------------------------------- files written over
def test_analyze_moves_to_a_new_folder(tmp_path, capsys):
    root = write_synthetic_dataset(tmp_path / "ds", 4, 64, 1, 2, seed=1).parent
    out = tmp_path / "an"
    out.mkdir()
    (out / "analysis.json").write_text("mine")
    assert main(["analyze", "--data", str(root), "--out", str(out), "--val-fraction", "0", "--max-images", "1",
                 "--quiet"]) == 0
    assert (out / "analysis.json").read_text() == "mine" and (tmp_path / "an2" / "analysis.json").is_file()
    assert "an2" in capsys.readouterr().out


def test_save_and_save_pretrained_never_replace_a_model(tmp_path):
    model = yolos.from_pretrained("bundled")
    other = yolos.create_model("micro")
    other.save_pretrained(tmp_path / "hf")
    before = (tmp_path / "hf" / "model.safetensors").read_bytes()
    with pytest.raises(yolos.CheckpointError, match="holds a model already"):
        model.save_pretrained(tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == before
    (tmp_path / "m.safetensors").write_bytes(b"precious")
    with pytest.raises(yolos.CheckpointError, match="exists"):
        model.save(tmp_path / "m.safetensors")
    assert (tmp_path / "m.safetensors").read_bytes() == b"precious"
    model.save(tmp_path / "m.safetensors", overwrite=True)
    model.save_pretrained(tmp_path / "hf", overwrite=True)
    assert yolos.from_pretrained(tmp_path / "hf").config.class_names == model.config.class_names
    for path in (tmp_path / "m.safetensors", tmp_path / "hf" / "model.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()  # as any other file we write


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_convert_never_writes_into_the_dataset(tmp_path, capsys):
    voc = _voc(tmp_path / "voc")
    for out in (voc, voc / "JPEGImages", voc / "sub"):
        assert main(["data", "convert", str(voc), "--out", str(out)]) == 2
        assert "inside the dataset" in _err(capsys)
    assert not (voc / "data.yaml").exists() and not (voc / "train.json").exists()


# ----------------------------------------------------------------------------- silently wrong
def test_predict_never_changes_the_model(capsys):
    model = yolos.from_pretrained("bundled")
    expected = model.predict(DEFAULT_IMAGE)[0].boxes
    for device, message in (("meta", "unsupported device type"), ("cuda:0", "CUDA is not available"),
                            ("CPU", "is not a device"), (0, "device")):
        if device == "cuda:0" and torch.cuda.is_available():
            continue
        with pytest.raises(ValueError, match=message):
            model.predict(DEFAULT_IMAGE, device=device)
    assert next(model.parameters()).device.type == "cpu"
    assert torch.equal(model.predict(DEFAULT_IMAGE, device="cpu")[0].boxes, expected)


def test_an_empty_val_split_is_an_error_not_ap_0(tmp_path, capsys):
    root = write_synthetic_dataset(tmp_path / "ds", 4, 64, 1, 2, seed=1).parent
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.json").write_text(json.dumps({"images": [], "annotations": [],
                                                     "categories": [{"id": 1, "name": "square"}]}))
    (tmp_path / "data.yaml").write_text(
        f"train: {{images: {root / 'images'}, annotations: {root / 'annotations.json'}}}\n"
        f"val: {{images: {tmp_path / 'empty'}, annotations: {tmp_path / 'empty.json'}}}\n")
    assert main(["data", "check", str(tmp_path / "data.yaml")]) == 1
    assert "the val split has no images" in capsys.readouterr().out
    assert main(["train", "--data", str(tmp_path / "data.yaml"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--workers", "0", "--no-progress"]) == 2
    assert "no images" in _err(capsys) and not (tmp_path / "run" / "best.safetensors").exists()


@pytest.mark.parametrize("content", ["[1, 2]", '"x"', "null", "3"])
def test_config_json_that_is_not_an_object(tmp_path, capsys, content):
    folder = tmp_path / "hf"
    yolos.create_model("micro").save_pretrained(folder)
    (folder / "config.json").write_text(content)
    assert main(["info", "--model", str(folder)]) == 2
    assert "must hold a JSON object" in _err(capsys)


def test_id2label_must_number_every_label(tmp_path):
    folder = tmp_path / "hf"
    yolos.create_model("micro").save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"-1": "a", "0": "b", "1": "c"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(yolos.CheckpointError, match="id2label keys must be the label ids 0..2"):
        yolos.from_pretrained(folder)


# ----------------------------------------------------------------------------- weak spots
def test_dataset_oddities_are_named(tmp_path, capsys):
    root = tmp_path / "y"
    (root / "images" / "train").mkdir(parents=True)
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for name in ("twin.jpg", "twin.png", "a.jpg"):
        Image.new("RGB", (64, 48)).save(root / "images" / "train" / name)
    Image.new("RGB", (64, 48)).save(root / "images" / "val" / "b.jpg")
    (root / "labels" / "train" / "twin.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "train" / "a.txt").write_bytes("\ufeff0 0.5 0.5 0.2 0.2\n".encode())  # a BOM
    (root / "labels" / "train" / "gone.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # no image
    (root / "data.yaml").write_text('train: images/train\nval: images/val\nnc: "3"\nnames: [dog, cat, dog]\n')
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "is the label file of both twin.jpg and twin.png" in out
    assert "gone.txt: has no image" in out
    assert "class name 'dog' is used by category ids 0 and 2" in out
    (root / "labels" / "train" / "a.txt").write_bytes("0 0.5 0.5 0.2 0.2\n".encode("utf-16"))
    ds = resolve_dataset(root).dataset("train")
    assert sum(len(ds.annotations[i]) for i in ds.ids) == 3  # twin twice, a once (UTF-16 read)


def test_an_unreadable_image_is_named_once_and_its_labels_are_no_orphans(tmp_path, capsys):
    root = tmp_path / "y"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (64, 48)).save(root / "images" / split / "ok.jpg")
    (root / "images" / "train" / "bad.jpg").write_bytes(b"not a picture")
    (root / "labels" / "train" / "bad.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [dog]\n")
    assert main(["data", "check", str(root)]) != 0
    out = capsys.readouterr().out
    assert out.count("bad.jpg: not a readable image") == 1
    assert "has no image" not in out  # its label file has an image: one that cannot be read


def test_coco_file_names_stay_inside_and_are_not_counted_twice(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "images" / "p.jpg")
    base = {"categories": [{"id": 1, "name": "cat"}], "annotations": []}
    for name, message in (("../secret.jpg", "leaves the images folder"), ("/etc/passwd", "leaves the images folder")):
        (tmp_path / "annotations.json").write_text(json.dumps(dict(base, images=[{"id": 1, "file_name": name}])))
        assert main(["data", "check", str(tmp_path), "--val-fraction", "0"]) == 1
        assert message in capsys.readouterr().out
    (tmp_path / "annotations.json").write_text(json.dumps(dict(base, images=[
        {"id": 1, "file_name": "p.jpg"}, {"id": 2, "file_name": "p.jpg"}])))
    assert main(["data", "check", str(tmp_path), "--val-fraction", "0"]) == 0
    assert "one photo counted twice" in capsys.readouterr().out


def test_a_zero_byte_image_is_reported_once_and_a_fifo_by_what_it_is(tmp_path, capsys):
    root = tmp_path / "y"
    (root / "images").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (64, 48)).save(root / "images" / f"ok{i}.jpg")
    (root / "images" / "zero.jpg").write_bytes(b"")
    (root / "data.yaml").write_text("train: images\nval: images\nnames: [a]\n")
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert sum("zero.jpg" in ln for ln in out.splitlines()) == 2  # once per split that holds it (train, val)
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(yolos.ImageError, match="not a regular file"):
        yolos.load_image(tmp_path / "pipe.jpg")


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "DATA", "--recipe", "finetune", "--out", "OUT"], "give the checkpoint to fine-tune with --init"),
    (["serve", "--max-inflight-megapixels", "0.000001"], "argument --max-inflight-megapixels"),
    (["benchmark", "--data", "README.md"], "not a directory"),
    (["export", "--out", "/proc/self/x.onnx"], "cannot write into /proc/self"),
    (["train", "--data", "DATA", "--time", "soon"], "argument --time"),
    (["val", "--data", "DATA", "--class-map", "square"], "--class-map"),
])
def test_options_that_were_accepted_before(tmp_path, capsys, argv, message):
    data = write_synthetic_dataset(tmp_path / "ds", 2, 64, 1, 1, seed=1).parent
    argv = [str(data) if a == "DATA" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit:  # refused by the parser
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_to_coco_takes_whole_ids_only():
    det = yolos.from_pretrained("bundled").predict(DEFAULT_IMAGE)[0]
    for bad in (1.5, True, 2**70, "3"):
        with pytest.raises(ValueError, match="image_id"):
            det.to_coco(bad)
    assert det.to_coco(torch.tensor(7))[0]["image_id"] == 7


def test_the_server_reads_mime_wrapped_base64():
    from fastapi.testclient import TestClient

    from yolos.serve import ServeSettings, create_app

    data = base64.encodebytes(DEFAULT_IMAGE.read_bytes()).decode()  # lines of 76 characters
    assert "\n" in data
    with TestClient(create_app(ServeSettings(), model=yolos.from_pretrained("bundled"))) as client:
        for _ in range(100):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        answer = client.post("/predict", json={"inputs": data})
    assert answer.status_code == 200 and len(answer.json()) > 0


def test_hub_names_fail_fast_offline(tmp_path):
    code = ("import sys, time; from yolos.cli import main; t = time.monotonic(); "
            "code = main(['info', '--model', 'yolos-ti']); print(round(time.monotonic() - t, 1)); sys.exit(code)")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))  # nothing listens on port 9
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "--init DIR" in done.stderr and "--model DIR" in done.stderr
    assert float(done.stdout.strip()) < 10


def test_images_saved_to_a_buffer_are_not_a_path(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, format="PNG")
    assert yolos.from_pretrained("bundled").predict(buffer.getvalue(), threshold=0.99)[0].path is None
