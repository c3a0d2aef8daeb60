"""DetectionDataset on the real COCO files, category mapping, collate, broken files, dataset YAML."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

from yolos.data import DatasetConfig, DetectionDataset, collate_fn, resolve_dataset
from yolos.data.transforms import transforms_for_variant
from yolos.errors import DatasetError


def _json(folder):
    name = "instances_val2017.json" if (folder / "val2017").is_dir() else "instances_train2017.json"
    return folder / "annotations" / name


def test_coco_targets_match_the_json(coco_val80):
    ann = _json(coco_val80)
    data = json.loads(ann.read_text())
    ds = DetectionDataset(coco_val80 / "val2017", ann)
    assert ds.keep_category_ids and ds.num_classes == 91 and len(ds) == 80
    assert ds.class_names[1] == "person" and ds.label_to_category_id(90) == 90
    crowd_images = {a["image_id"] for a in data["annotations"] if a["iscrowd"]}
    image_id = sorted(crowd_images)[0]
    x, t = ds[ds.ids.index(image_id)]
    info = next(i for i in data["images"] if i["id"] == image_id)
    expected = [a for a in data["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
    assert x.shape == (3, info["height"], info["width"]) and x.dtype == torch.float32
    assert t["image_id"] == image_id and t["orig_size"].tolist() == [info["height"], info["width"]]
    assert t["labels"].tolist() == [a["category_id"] for a in expected]
    assert t["labels"].dtype == torch.int64 and not t["iscrowd"].any()
    # cxcywh normalized by the image: back to COCO xywh pixels
    h, w = info["height"], info["width"]
    cx, cy, bw, bh = t["boxes"].unbind(1)
    xywh = torch.stack(((cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h), 1)
    assert torch.allclose(xywh, torch.tensor([a["bbox"] for a in expected]), atol=1e-3)


def test_grayscale_images_become_rgb(coco128):
    ds = DetectionDataset(coco128 / "train2017", _json(coco128))
    gray = [i for i in ds.ids if Image.open(ds.image_path(i)).mode != "RGB"]
    assert gray, "coco128 is documented to contain grayscale images"
    x, _ = ds[ds.ids.index(gray[0])]
    assert x.shape[0] == 3


def test_clamping_and_degenerate_boxes(tmp_path):
    Image.new("RGB", (50, 40)).save(tmp_path / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 50}],
        "categories": [{"id": 7, "name": "widget"}, {"id": 3, "name": "gadget"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [40, 30, 20, 20]},  # clamped
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 10]},  # degenerate
            {"id": 3, "image_id": 1, "category_id": 3, "bbox": [60, 5, 5, 5]},  # outside
            {"id": 4, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 1},
            {"id": 5, "image_id": 1, "category_id": 3, "bbox": [10, 10, 10, 20]},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = DetectionDataset(tmp_path, tmp_path / "ann.json")
    assert not ds.keep_category_ids and ds.num_classes == 2
    assert ds.class_names == {0: "gadget", 1: "widget"}
    assert ds.category_id_to_label == {3: 0, 7: 1}
    assert [ds.label_to_category_id(i) for i in (0, 1)] == [3, 7]
    _, t = ds[0]
    assert t["labels"].tolist() == [1, 0]
    # [40,30,50,40] clamped -> cxcywh 45,35,10,10 ; [10,10,20,30] -> 15,20,10,20 ; /(50,40)
    expected = torch.tensor([[45 / 50, 35 / 40, 10 / 50, 10 / 40], [15 / 50, 20 / 40, 10 / 50, 20 / 40]])
    assert torch.allclose(t["boxes"], expected)
    assert DetectionDataset(tmp_path, tmp_path / "ann.json", keep_category_ids=True).num_classes == 8
    names = DetectionDataset(tmp_path, tmp_path / "ann.json", names=["g", "w"]).class_names
    assert names == {0: "g", 1: "w"}


def test_coco_subset_keeps_91_ids_and_renamed_ids_do_not(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    base = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}
    cases = {
        "subset": ([{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}], True),
        "renamed": ([{"id": 1, "name": "person"}, {"id": 18, "name": "wolf"}], False),
    }
    for name, (cats, coco) in cases.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({**base, "categories": cats}))
        ds = DetectionDataset(tmp_path, tmp_path / f"{name}.json")
        assert ds.keep_category_ids is coco and ds.num_classes == (91 if coco else 2)
    forced = DetectionDataset(tmp_path, tmp_path / "subset.json", keep_category_ids=False)
    assert forced.num_classes == 2 and forced.label_to_category_id(1) == 18


def _broken(tmp_path, mutate):
    Image.new("RGB", (20, 20)).save(tmp_path / "a.jpg")
    data = {"images": [{"id": 4, "file_name": "a.jpg", "height": 20, "width": 20}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 99, "image_id": 4, "category_id": 1, "bbox": [1, 1, 5, 5]}]}
    text = mutate(data)
    (tmp_path / "bad.json").write_text(text if isinstance(text, str) else json.dumps(data))
    return tmp_path / "bad.json"


def _set(path, value):
    def mutate(data):
        obj = data
        for key in path[:-1]:
            obj = obj[key]
        if value is KeyError:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return mutate


@pytest.mark.parametrize("mutate, words", [
    (lambda d: "{not json", ["bad.json", "JSON"]),
    (_set(["annotations"], KeyError), ["annotations"]),
    (_set(["annotations", 0, "bbox"], [1, 1, "x", 5]), ["annotation id 99", "image id 4", "bbox"]),
    (_set(["annotations", 0, "bbox"], [1, 1, -3, 5]), ["annotation id 99", "negative", "bbox"]),
    (_set(["annotations", 0, "bbox"], [1, 1, 5]), ["annotation id 99", "bbox", "4 numbers"]),
    (_set(["annotations", 0, "category_id"], 12), ["annotation id 99", "category_id 12"]),
    (_set(["annotations", 0, "image_id"], 5), ["annotation id 99", "image id 5"]),
    (_set(["annotations", 0, "bbox"], KeyError), ["annotation id 99", "'bbox'"]),
    (_set(["images", 0, "file_name"], KeyError), ["image id 4", "file_name"]),
    (_set(["images", 0, "file_name"], "missing.jpg"), ["missing.jpg", "image id 4"]),
])
def test_broken_annotations_raise_dataset_errors(tmp_path, mutate, words):
    path = _broken(tmp_path, mutate)
    with pytest.raises(DatasetError) as err:
        DetectionDataset(tmp_path, path)
    for word in words:
        assert word in str(err.value)


def test_undecodable_image_names_file_and_id(tmp_path):
    path = _broken(tmp_path, lambda d: None)
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"a\.jpg.*image id 4"):  # the check reads every header first
        DetectionDataset(tmp_path, path)
    noise = torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    Image.fromarray(noise.numpy()).save(tmp_path / "a.png")
    (tmp_path / "a.jpg").write_bytes((tmp_path / "a.png").read_bytes()[:2000])  # a header, then half the pixels
    ds = DetectionDataset(tmp_path, path)
    with pytest.raises(DatasetError, match=r"a\.jpg.*image id 4"):
        ds[0]
    with pytest.raises(DatasetError, match="not found"):
        DetectionDataset(tmp_path, tmp_path / "nope.json")


def test_collate_pads_bottom_right(coco_val80):
    ds = DetectionDataset(coco_val80 / "val2017", _json(coco_val80), transforms_for_variant("micro", "val"),
                       image_ids=None)
    items = [ds[i] for i in range(4)]
    pixel_values, targets = collate_fn(items)
    H = max(x.shape[1] for x, _ in items)
    W = max(x.shape[2] for x, _ in items)
    assert pixel_values.shape == (4, 3, H, W)
    for i, (x, t) in enumerate(items):
        h, w = x.shape[1:]
        assert torch.equal(pixel_values[i, :, :h, :w], x)
        assert pixel_values[i, :, h:, :].abs().sum() == 0 and pixel_values[i, :, :, w:].abs().sum() == 0
        assert targets[i] is t


def test_resolve_coco_folders(coco128, coco_val80):
    cfg = resolve_dataset(coco128)
    assert cfg.train_images == coco128 / "train2017"
    assert cfg.val is None and cfg.held_out  # no val split: 10% of train is held out, the same every time
    assert cfg.train_annotations.name == "instances_train2017.json"
    train, val = cfg.read("train"), cfg.read("val")
    train_files = {im["file_name"] for im in train.coco["images"]}
    val_files = {im["file_name"] for im in val.coco["images"]}
    assert len(val_files) == round(0.1 * 128) and not train_files & val_files and len(train_files) == 128 - 13
    assert val_files == {im["file_name"] for im in resolve_dataset(coco128).read("val").coco["images"]}
    cfg = resolve_dataset(coco_val80)
    assert cfg.val_annotations == coco_val80 / "annotations" / "instances_val2017.json"


def test_resolve_yaml_and_roboflow_layout(tmp_path, coco_val80):
    root = tmp_path / "ds"
    for split in ("train", "valid"):
        (root / split).mkdir(parents=True)
        (root / split / "_annotations.coco.json").write_text("{}")
    cfg = resolve_dataset(root)
    assert cfg.train_images == root / "train" and cfg.val_images == root / "valid"

    yaml_path = tmp_path / "data.yaml"
    yaml_path.write_text(f"path: {coco_val80}\ntrain:\n  images: val2017\n"
                         f"  annotations: annotations/instances_val2017.json\nnames: [a, b]\n")
    cfg = resolve_dataset(yaml_path)
    # resolved: the shared data folder may be reached through a symbolic link
    assert cfg.train_images.resolve() == (coco_val80 / "val2017").resolve()
    assert cfg.val is None and cfg.held_out
    assert cfg.names == ["a", "b"]

    yaml_path.write_text("train:\n  images: nowhere\n  annotations: x.json\n")
    with pytest.raises(DatasetError, match=r"train\.images"):
        resolve_dataset(yaml_path)
    yaml_path.write_text("val:\n  images: a\n")
    with pytest.raises(DatasetError, match="'train'"):
        resolve_dataset(yaml_path)
    yaml_path.write_text("train: [unclosed\n")
    with pytest.raises(DatasetError, match="data.yaml"):
        resolve_dataset(yaml_path)
    with pytest.raises(DatasetError, match="no dataset layout found; looked for COCO .*YOLO .*Pascal VOC"):
        resolve_dataset(tmp_path / "ds" / "train")
    with pytest.raises(DatasetError, match="not found"):
        resolve_dataset(tmp_path / "missing.yaml")
    assert isinstance(DatasetConfig.from_paths(coco_val80 / "val2017",
                                               _json(coco_val80)), DatasetConfig)
    shutil.rmtree(root)
