"""Public datasets as their tools write them: Roboflow's COCO export (annotation id 0, a
supercategory row, train/valid/test), VOC with ImageSets, LabelImg's flat folders and 0-based
pixels, YOLO sets without a val split or with paths from someone else's machine."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import yolos
from yolos.cli import main
from yolos.data.dataset_config import resolve_dataset
from yolos.data.synthetic import write_synthetic_dataset
from yolos.evaluation.coco_eval import run_cocoeval

pytestmark = pytest.mark.usefixtures("one_thread")
TRAIN = ["--batch-size", "4", "--workers", "0", "--no-progress", "--no-augment", "--train-sizes", "64",
         "--eval-size", "64", "--epochs", "1"]


def _roboflow(root: Path, splits=("train", "valid", "test")) -> Path:
    """A Roboflow-style COCO export: annotation ids from 0, the project as category id 0 with no
    box, every real class naming it as supercategory."""
    for n, split in enumerate(splits):
        ann = write_synthetic_dataset(root / f"_{split}", 8, 96, 1, 3, seed=10 + n)
        data = json.loads(ann.read_text())
        data["categories"] = [{"id": 0, "name": "shapes-abc", "supercategory": "none"}] + [
            dict(c, supercategory="shapes-abc") for c in data["categories"]]
        for i, a in enumerate(data["annotations"]):
            a["id"] = i  # from 0, as Roboflow numbers them
            a["area"] = a["bbox"][2] * a["bbox"][3]
        (root / split).mkdir(parents=True)
        for im in data["images"]:
            shutil.copy(root / f"_{split}" / "images" / im["file_name"], root / split / im["file_name"])
        (root / split / "_annotations.coco.json").write_text(json.dumps(data))
        shutil.rmtree(root / f"_{split}")
    return root


def test_roboflow_annotation_id_0_and_supercategory(tmp_path, capsys):
    root = _roboflow(tmp_path / "rf")
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "annotation ids renumbered" in out and "'shapes-abc' dropped" in out and "test:" in out
    ds = resolve_dataset(root).dataset("val")
    assert [c["name"] for c in ds.categories] == ["square", "circle", "triangle"]  # no project row
    gt = ds.ground_truth()
    assert min(a["id"] for a in gt["annotations"]) == 1
    # the ground truth scored as predictions is perfect (with id 0 it read 0.98-0.99)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"]]
    assert run_cocoeval(gt, perfect).stats[0] == pytest.approx(1.0)
    # val --split test reads Roboflow's test folder
    assert main(["val", "--data", str(root), "--split", "test", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "images of the test split" in out and str(root / "test") in out


def test_voc_image_sets_check_and_convert_both_splits(tmp_path, capsys):
    from layouts import write_voc

    ann = write_synthetic_dataset(tmp_path / "src", 6, 96, 1, 2, seed=3)
    voc = write_voc(ann, tmp_path / "src" / "images", tmp_path / "voc")
    ids = [p.stem for p in sorted((voc / "Annotations").glob("*.xml"))]
    (voc / "ImageSets/Main/train.txt").write_text("\n".join(ids[:4]) + "\n")
    (voc / "ImageSets/Main/val.txt").write_text("\n".join(ids[4:]) + "\n")
    assert main(["data", "check", str(voc)]) == 0
    out = capsys.readouterr().out
    assert "ImageSets/Main/train.txt" in out and "ImageSets/Main/val.txt" in out
    assert "\ntrain: voc" in out and "\nval: voc" in out and "one split" not in out
    assert main(["data", "convert", str(voc), "--out", str(tmp_path / "json")]) == 0
    val = json.loads((tmp_path / "json" / "val.json").read_text())
    assert len(val["images"]) == 2 and len(json.loads((tmp_path / "json" / "train.json").read_text())["images"]) == 4
    assert "val.json" in (tmp_path / "json" / "data.yaml").read_text()
    # a broken file named only by val.txt stops the check
    (voc / "Annotations" / f"{ids[5]}.xml").write_text("<annotation><object>")
    assert main(["data", "check", str(voc)]) == 1
    assert f"{ids[5]}.xml" in capsys.readouterr().out
    # and data convert never writes into the dataset
    assert main(["data", "convert", str(voc), "--out", str(voc)]) == 2
    assert "inside the dataset" in capsys.readouterr().err and not (voc / "data.yaml").exists()


def test_no_val_split_holds_out_the_same_images_everywhere(tmp_path, capsys):
    ann = write_synthetic_dataset(tmp_path / "one", 20, 64, 1, 2, seed=4)
    run = tmp_path / "run"
    assert main(["train", "--data", str(ann.parent), "--out", str(run), *TRAIN]) == 0
    out = capsys.readouterr().out
    assert "10% of train held out" in out
    config = json.loads((run / "log.jsonl").read_text().splitlines()[0])["config"]
    assert config["val_fraction"] == 0.1
    dc = resolve_dataset(ann.parent)
    train, val = dc.read("train"), dc.read("val")
    held = {im["file_name"] for im in val.coco["images"]}
    assert len(held) == 2 and not held & {im["file_name"] for im in train.coco["images"]}
    assert main(["data", "check", str(ann.parent)]) == 0
    assert "2 of 20 images held out" in capsys.readouterr().out
    # 0: validate on the training images, and say so
    assert main(["train", "--data", str(ann.parent), "--out", str(tmp_path / "run0"), "--val-fraction", "0",
                 *TRAIN]) == 0
    assert "the same as train (--val-fraction 0)" in capsys.readouterr().out


def _yolo(root: Path, n: int = 6, names=("a", "b")) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        Image.new("RGB", (80, 60), (20 * i, 90, 200)).save(root / "images" / f"im{i}.jpg")
        (root / "labels" / f"im{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.4 0.4\n")
    return root


def test_yolo_paths_from_another_machine_and_a_val_that_is_not_shipped(tmp_path, capsys):
    root = _yolo(tmp_path / "signs")
    (root / "data.yaml").write_text("path: /home/someone/datasets/signs\ntrain: images\nval: ../valid/images\n"
                                    "names: [a, b]\n")
    dc = resolve_dataset(root)
    assert dc.held_out and dc.train.sources == (root / "images",)
    text = dc.describe()
    assert "/home/someone/datasets/signs is not a folder here" in text and str(root) in text
    assert "val: ../valid/images is not here" in text
    assert main(["data", "check", str(root)]) == 0
    (root / "data.yaml").write_text("train: nowhere/images\nnames: [a, b]\n")
    assert main(["data", "check", str(root)]) == 2
    assert str(root / "nowhere" / "images") in capsys.readouterr().err


def test_yolo_without_split_folders_and_with_a_list(tmp_path):
    root = _yolo(tmp_path / "flat", n=10)
    (root / "data.yaml").write_text("train: images\nnames: {0: a, 1: b}\n")
    dc = resolve_dataset(root)
    assert dc.held_out and len(dc.read("val").coco["images"]) == 1 and len(dc.read("train").coco["images"]) == 9
    (root / "train.txt").write_text("".join(f"images/im{i}.jpg\n" for i in range(5)))
    (root / "data.yaml").write_text("train: train.txt\nval: images\nnames: [a, b]\n")
    dc = resolve_dataset(root)
    assert len(dc.read("train").coco["images"]) == 5 and len(dc.read("val").coco["images"]) == 10


def _labelimg(folder: Path, stem: str, box: tuple[int, int, int, int], with_path: bool = True) -> None:
    """A file as LabelImg writes it: <folder>, <filename>, <path> (the annotator's machine)."""
    x0, y0, x1, y1 = box
    path = f"<path>C:\\Users\\ann\\Pictures\\{stem}.jpg</path>" if with_path else ""
    (folder / f"{stem}.xml").write_text(
        f"<annotation><folder>Pictures</folder><filename>{stem}.jpg</filename>{path}"
        f"<source><database>Unknown</database></source><size><width>100</width><height>80</height>"
        f"<depth>3</depth></size><segmented>0</segmented><object><name>dog</name><pose>Unspecified</pose>"
        f"<truncated>0</truncated><difficult>False</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>")


def test_labelimg_flat_folders_and_pixels(tmp_path, capsys):
    beside = tmp_path / "beside"
    beside.mkdir()
    for i in range(4):
        Image.new("RGB", (100, 80)).save(beside / f"p{i}.jpg")
        _labelimg(beside, f"p{i}", (10, 20, 50, 60))
    dc = resolve_dataset(beside, val_fraction=0)
    assert dc.kind == "LabelImg (flat)"
    ds = dc.dataset("train")
    boxes = [a["bbox"] for i in ds.ids for a in ds.annotations[i]]
    assert boxes == [[10.0, 20.0, 40.0, 40.0]] * 4  # read as written: 0-based pixel edges
    assert not any(a["iscrowd"] for a in ds.coco["annotations"])  # <difficult>False</difficult> is not difficult
    # annotations/ + images/, and train/ val/ folders
    flat = tmp_path / "flat"
    (flat / "annotations").mkdir(parents=True)
    (flat / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (100, 80)).save(flat / "images" / f"q{i}.jpg")
        _labelimg(flat / "annotations", f"q{i}", (1, 1, 30, 30))
    assert resolve_dataset(flat, val_fraction=0).dataset("train").report.images == 3
    split = tmp_path / "split"
    for name, n in (("train", 3), ("val", 2)):
        (split / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (100, 80)).save(split / name / f"{name}{i}.jpg")
            _labelimg(split / name, f"{name}{i}", (5, 5, 40, 40))
    dc = resolve_dataset(split)
    assert dc.kind == "LabelImg (split folders)" and not dc.held_out
    assert len(dc.dataset("val")) == 2 and len(dc.dataset("train")) == 3
    assert main(["data", "check", str(split)]) == 0
    out = capsys.readouterr().out
    assert "LabelImg (split folders)" in out and "as written (0-based)" in out


def test_difficult_values_and_devkit_pixels(tmp_path):
    voc = tmp_path / "voc"
    for sub in ("Annotations", "JPEGImages"):
        (voc / sub).mkdir(parents=True)
    for i, flag in enumerate(("1", "true", "0", "no", "")):
        Image.new("RGB", (100, 80)).save(voc / "JPEGImages" / f"v{i}.jpg")
        (voc / "Annotations" / f"v{i}.xml").write_text(
            f"<annotation><filename>v{i}.jpg</filename><object><name>cat</name><difficult>{flag}</difficult>"
            f"<bndbox><xmin>11</xmin><ymin>21</ymin><xmax>50</xmax><ymax>60</ymax></bndbox></object></annotation>")
    ds = resolve_dataset(voc, val_fraction=0).dataset("train")
    anns = sorted((ds.images[a["image_id"]]["file_name"], a["iscrowd"], a["bbox"]) for a in ds.coco["annotations"])
    assert [c for _, c, _ in anns] == [1, 1, 0, 0, 0]
    assert anns[0][2] == [10.0, 20.0, 40.0, 40.0]  # VOC devkit: 1-based indices
    (voc / "Annotations" / "v4.xml").write_text(
        "<annotation><filename>v4.jpg</filename><object><name>cat</name><difficult>maybe</difficult>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(yolos.DatasetError, match=r"v4\.xml.*<difficult> is 'maybe'"):
        resolve_dataset(voc, val_fraction=0).dataset("train")


def test_the_bundled_model_has_a_name(tmp_path):
    from yolos.defaults import DEFAULT_MODEL

    for name in ("bundled", "yolos-micro-shapes"):
        model = yolos.from_pretrained(name)
        assert torch.equal(model.det_tokens, yolos.from_pretrained(DEFAULT_MODEL).det_tokens)
    with pytest.raises(yolos.CheckpointError, match="'bundled'"):
        yolos.from_pretrained("no-such-model")


def test_finetune_sizes_its_input_from_the_data(tmp_path, capsys):
    from yolos.train.sizes import choose_sizes

    # 2048x1371 photos whose boxes are ~60 px: a quarter of them under 4.4% of the short side, so
    # that two 16-pixel patches need a short side of 32 / 0.0438 = 731 -> 736 (a multiple of 32)
    sizes = choose_sizes([(2048, 1371)] * 4, [(60.0, i) for i in range(4)], (128, 128))
    assert sizes.eval_size == 736 and sizes.train_sizes == [576, 608, 640, 672, 704, 736]
    assert sizes.eval_max_size == 1120  # 736 x 2048/1371 = 1099 -> 1120
    assert choose_sizes([(128, 128)] * 4, [(40.0, i) for i in range(4)], (128, 128)).train_sizes is None
    # a fine-tune of the bundled model on 320x240 photos with small boxes
    root = tmp_path / "photos"
    write_synthetic_dataset(root, 6, 320, 2, 4, seed=1, min_size=16, max_size=24)
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--init", "bundled", "--recipe", "finetune", "--epochs", "1",
                 "--batch-size", "4", "--workers", "0", "--no-progress", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "input size from the data: short side 320" in out
    model = yolos.from_pretrained(run / "last.safetensors")
    assert model.config.eval_size == (320, 320)
    from yolos.model.variants import input_size

    assert input_size(model.config, "transformers") == (320, 320)  # predict, val and export use it


def test_boxes_end_inside_the_image(tmp_path):
    from yolos.defaults import DEFAULT_IMAGE

    model = yolos.from_pretrained("bundled")
    with torch.no_grad():  # every box centred near the right edge and wider than the image
        model.box_head.layers[-1].bias.copy_(torch.tensor([4.0, 0.0, 4.0, 4.0]))
    det = model.predict(DEFAULT_IMAGE, threshold=0.0)[0]
    h, w = det.image_size
    assert len(det) > 0 and det.boxes[:, 2].max() == w and det.boxes.min() >= 0 and det.boxes[:, 3].max() <= h
    pixels = yolos.preprocess(Image.open(DEFAULT_IMAGE).convert("RGB"), 128, 128)
    raw = yolos.postprocess(model(pixels["pixel_values"]), [(h, w)], threshold=0.0)[0]
    assert raw["boxes"][:, 2].max() > w  # transformers' post-processing, kept as it is


def test_plain_progress_lines_off_a_terminal(monkeypatch):
    from yolos.train import console

    lines = []
    monkeypatch.setattr(console, "LINE_EVERY_S", 0.0)
    reporter = console.StepReporter(3, 6, tty=False, say=lines.append)
    for epoch in range(2):
        reporter.start_epoch(epoch, 2)
        for _ in range(2):
            reporter.step({"loss": 1.5}, 1e-3)
        reporter.end_epoch()
    assert lines[0].startswith("epoch 1/3 step 1/2: loss 1.5000") and "run ETA" in lines[-1]
    assert lines[-1].startswith("epoch 2/3 step 2/2") and all("\r" not in ln for ln in lines)


def test_pr_curves_are_ordered_and_coloured_apart(tmp_path, monkeypatch):
    from yolos.evaluation import report

    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig) or path)
    per_class = [{"category_id": i, "AP": 0.9 - i / 20, "AP50": (i * 7 % 12) / 12} for i in range(12)]
    curves = {i: [1.0, 0.5, 0.2] for i in range(12)}
    confusion = {"category_ids": list(range(12)), "matrix": [[0] * 13 for _ in range(13)], "threshold": 0.5,
                 "iou_threshold": 0.5}
    report.write_plots(tmp_path, per_class, curves, [0.0, 0.5, 1.0], confusion, {i: f"c{i}" for i in range(12)})
    ax = figures[0].axes[0]
    styles = {(line.get_color(), line.get_linestyle()) for line in ax.lines}
    assert len(styles) == 12  # no two classes look alike
    ap50 = [float(t.get_text().split("AP50 ")[1].rstrip(")")) for t in ax.get_legend().get_texts()]
    assert ap50 == sorted(ap50) and "worst" not in ax.get_title()
