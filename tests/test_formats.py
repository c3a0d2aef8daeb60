"""Datasets in the three layouts users bring (COCO, YOLO, VOC), read in place; the dataset check;
EXIF-rotated photos; the layout error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from layouts import sparse_coco, write_voc, write_yolo
from PIL import Image

from yolos.box_ops import cxcywh_to_xyxy
from yolos.cli import main
from yolos.data import resolve_dataset
from yolos.data.check import box_frame
from yolos.errors import DatasetError


def _boxes_by_file(ds) -> dict[str, list]:
    out = {}
    for image_id in ds.ids:
        name = ds.image_path(image_id).name
        anns = sorted(ds.annotations[image_id], key=lambda a: (a["bbox"][0], a["bbox"][1]))
        out[name] = [([round(v, 3) for v in a["bbox"]], ds.categories[[c["id"] for c in ds.categories]
                                                                     .index(a["category_id"])]["name"], a["iscrowd"])
                     for a in anns]
    return out


@pytest.fixture
def three_layouts(tmp_path):
    coco = sparse_coco(tmp_path / "coco")
    yolo = write_yolo(coco, tmp_path / "coco" / "images", tmp_path / "yolo", polygon_every=3)
    voc = write_voc(coco, tmp_path / "coco" / "images", tmp_path / "voc")
    return tmp_path / "coco", yolo, voc


def test_three_layouts_read_the_same_boxes(three_layouts):
    coco, yolo, voc = three_layouts
    sets = {name: resolve_dataset(path, val_fraction=0) for name, path in (("coco", coco), ("yolo", yolo), ("voc", voc))}
    assert [d.layout for d in sets.values()] == ["coco", "yolo", "voc"]
    read = {name: d.dataset("val") for name, d in sets.items()}
    assert read["coco"].category_ids == [3, 17, 1000] == read["yolo"].category_ids  # YOLO: class index = id
    assert [c["name"] for c in read["voc"].categories] == ["circle", "square", "triangle"]  # VOC: sorted names
    reference = _boxes_by_file(read["coco"])
    assert sum(len(v) for v in reference.values()) >= 12
    for name in ("yolo", "voc"):
        got = _boxes_by_file(read[name])
        assert got.keys() == reference.keys()
        for file, boxes in reference.items():
            assert len(got[file]) == len(boxes), (name, file)
            for (a, na, _), (b, nb, _) in zip(got[file], boxes):
                assert na == nb and np.allclose(a, b, atol=1e-3), (name, file, a, b)


def test_yolo_labels_empty_missing_polygon_and_problems(tmp_path, capsys):
    root = tmp_path / "y"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name in ("a", "b", "c", "d"):
        Image.new("RGB", (100, 50), (40, 90, 200)).save(root / "images" / f"{name}.png")
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6\n")
    (root / "labels" / "b.txt").write_text("")  # empty: no objects; c has no label file at all
    (root / "labels" / "d.txt").write_text("0 0.95 0.5 0.2 0.2\n")  # sticks out on the right
    (root / "data.yaml").write_text("train: images\nval: images\nnames: [cat, dog]\n")
    ds = resolve_dataset(root).dataset("val")
    by_name = {ds.image_path(i).name: ds.annotations[i] for i in ds.ids}
    assert by_name["b.png"] == [] and by_name["c.png"] == []
    boxes = sorted((a["category_id"], [round(v, 4) for v in a["bbox"]]) for a in by_name["a.png"])
    assert boxes == [(0, [10.0, 10.0, 20.0, 20.0]), (1, [40.0, 15.0, 20.0, 20.0])]  # the polygon's box
    assert [round(v, 4) for v in by_name["d.png"][0]["bbox"]] == [85.0, 20.0, 15.0, 10.0]  # clipped
    assert ds.report.clipped == 1 and ds.report.images_without_boxes == 2
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "d.txt:1" in out and "clipped" in out and "cat  2" in out

    (root / "labels" / "b.txt").write_text("0 0.5 0.5 0.1 0.1\n5 0.5 0.5 0.1 0.1\n0 x 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match=r"b\.txt:2: class 5 is not one of names"):
        resolve_dataset(root).dataset("val")
    assert main(["data", "check", str(root)]) == 1
    captured = capsys.readouterr()
    assert "b.txt:2" in captured.out and "b.txt:3" in captured.out and "would stop training" in captured.err


def test_voc_difficult_objects_are_ignored(tmp_path):
    from yolos.evaluation.coco_eval import coco_evaluate

    coco = sparse_coco(tmp_path / "coco", num_images=4)
    data = json.loads(coco.read_text())
    hard = data["annotations"][0]
    root = write_voc(coco, tmp_path / "coco" / "images", tmp_path / "voc", difficult_ids={hard["id"]})
    ds = resolve_dataset(root).dataset("val")
    gt = ds.ground_truth()
    crowd = [a for a in gt["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and np.allclose(crowd[0]["bbox"], hard["bbox"])
    image_id = crowd[0]["image_id"]
    _, target = ds[ds.ids.index(image_id)]
    h, w = target["orig_size"].tolist()
    boxes = cxcywh_to_xyxy(target["boxes"]) * torch.tensor([w, h, w, h])
    assert not any(np.allclose(b.tolist(), [hard["bbox"][0], hard["bbox"][1], hard["bbox"][0] + hard["bbox"][2],
                                            hard["bbox"][1] + hard["bbox"][3]], atol=1e-3) for b in boxes)
    # every other object found exactly, plus one detection on the difficult one: AP 1 (neither right nor wrong)
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in gt["annotations"]]
    assert coco_evaluate(gt, results)["AP"] == pytest.approx(1.0)


def test_an_unknown_layout_names_what_was_looked_for(tmp_path, capsys):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hi")
    assert main(["data", "check", str(tmp_path / "stuff")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "COCO" in err and "YOLO" in err and "Pascal VOC" in err and "notes.txt" in err
    (tmp_path / "stuff" / "images").mkdir()
    (tmp_path / "stuff" / "labels").mkdir()
    assert main(["val", "--model", "no-such-model", "--data", str(tmp_path / "stuff")]) == 2  # data first
    assert "no data.yaml with names" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- EXIF
def _rotated_photo(path, orientation: int = 6):
    """A JPEG stored 96x64 with a red block at stored pixels x 10..40, y 8..30, tagged with an
    EXIF orientation; returns (stored box xyxy, displayed box xyxy, displayed size)."""
    pixels = np.full((64, 96, 3), 200, dtype=np.uint8)
    pixels[8:30, 10:40] = (220, 20, 20)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, quality=98, exif=exif.tobytes())
    from yolos.images import load_image

    shown = np.asarray(load_image(path)).astype(int)
    ys, xs = np.nonzero((shown[..., 0] > 150) & (shown[..., 1] < 100))
    return (10, 8, 40, 30), (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), (shown.shape[1], shown.shape[0])


def _training_box(ds) -> list[float]:
    _, target = ds[0]
    h, w = target["orig_size"].tolist()
    return (cxcywh_to_xyxy(target["boxes"][0]) * torch.tensor([w, h, w, h])).tolist()


@pytest.mark.parametrize("frame", ["stored", "displayed"])
def test_exif_rotated_coco_boxes_in_either_frame(tmp_path, frame):
    stored, shown, (dw, dh) = _rotated_photo(tmp_path / "p.jpg")
    assert (dw, dh) == (64, 96)  # orientation 6: turned a quarter clockwise for display
    x0, y0, x1, y1 = stored if frame == "stored" else shown
    size = {"width": 96, "height": 64} if frame == "stored" else {"width": 64, "height": 96}
    (tmp_path / "a.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "p.jpg", **size}], "categories": [{"id": 1, "name": "block"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0]}]}))
    from yolos.data import DetectionDataset

    ds = DetectionDataset(tmp_path, tmp_path / "a.json")
    assert np.allclose(_training_box(ds), shown, atol=0.01)
    assert ds.report.rotated == [("p.jpg", 6, frame)]


def test_exif_rotated_yolo_and_voc(tmp_path):
    (tmp_path / "y" / "images").mkdir(parents=True)
    (tmp_path / "y" / "labels").mkdir()
    _, shown, (dw, dh) = _rotated_photo(tmp_path / "y" / "images" / "p.jpg")
    x0, y0, x1, y1 = shown  # YOLO labels are normalized in the displayed frame
    (tmp_path / "y" / "labels" / "p.txt").write_text(
        f"0 {(x0 + x1) / 2 / dw} {(y0 + y1) / 2 / dh} {(x1 - x0) / dw} {(y1 - y0) / dh}\n")
    (tmp_path / "y" / "data.yaml").write_text("train: images\nval: images\nnames: [block]\n")
    assert np.allclose(_training_box(resolve_dataset(tmp_path / "y").dataset("val")), shown, atol=0.01)

    voc = tmp_path / "v"
    for sub in ("Annotations", "JPEGImages"):
        (voc / sub).mkdir(parents=True)
    stored, shown, _ = _rotated_photo(voc / "JPEGImages" / "p.jpg")
    (voc / "Annotations" / "p.xml").write_text(  # drawn on the stored pixels: <size> is the stored one
        f"<annotation><filename>p.jpg</filename><size><width>96</width><height>64</height></size><object>"
        f"<name>block</name><bndbox><xmin>{stored[0] + 1}</xmin><ymin>{stored[1] + 1}</ymin><xmax>{stored[2]}</xmax>"
        f"<ymax>{stored[3]}</ymax></bndbox></object></annotation>")
    assert np.allclose(_training_box(resolve_dataset(voc).dataset("train")), shown, atol=0.01)


def test_box_frame_rules():
    assert box_frame(1, (96, 64), (96, 64)) == "displayed"
    assert box_frame(6, (96, 64), (64, 96)) == "stored"  # the size says so
    assert box_frame(6, (64, 96), (64, 96)) == "displayed"
    assert box_frame(6, None, (64, 96)) == "displayed"  # YOLO: no size, as Ultralytics
    assert box_frame(6, (64, 64), (64, 64)) == "displayed"  # square: ambiguous
    assert box_frame(3, (96, 64), (96, 64)) == "displayed"  # 180 degrees: ambiguous
    assert box_frame(3, (96, 64), (96, 64), "stored") == "stored"  # the dataset YAML's exif: stored


def test_predict_finds_the_object_where_the_photo_shows_it(tmp_path):
    """The same file is the same image for training and prediction: predict decodes through the
    one loader, so a shape in an EXIF-rotated photo is found where the rotated photo shows it."""
    import yolos
    from yolos.box_ops import box_iou
    from yolos.defaults import DEFAULT_MODEL

    pixels = np.full((128, 192, 3), (60, 160, 90), dtype=np.uint8)
    pixels[20:76, 30:86] = (250, 250, 60)  # a yellow square, 56 px, stored frame
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 8  # shown turned a quarter counter-clockwise: 128 wide, 192 high
    image.save(tmp_path / "photo.jpg", quality=98, exif=exif.tobytes())
    det = yolos.from_pretrained(DEFAULT_MODEL).predict(tmp_path / "photo.jpg", threshold=0.5)[0]
    assert det.image_size == (192, 128)
    shown = torch.tensor([[20.0, 192 - 86, 76, 192 - 30]])  # x0 = y0, y0 = W - x1 (orientation 8)
    squares = [i for i, n in enumerate(det.label_names) if n == "square"]
    # IoU 0.5, the COCO match: the wrong frame puts the box elsewhere (IoU near 0)
    assert squares and float(box_iou(det.boxes[squares], shown)[0].max()) > 0.5
