"""A model's classes beside a dataset's: matched by name in every layout pair, through val, train
--init, predict and to_coco (the bundled model knows square, circle, triangle as ids 1, 2, 3)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from layouts import write_voc, write_yolo

import yolos
from yolos.cli import main
from yolos.data.classes import match_classes, name_key, parse_class_map
from yolos.data.dataset_config import resolve_dataset
from yolos.data.synthetic import write_synthetic_dataset
from yolos.errors import DatasetError
from yolos.train.builders import fit_class_head

pytestmark = pytest.mark.usefixtures("one_thread")
STATS = ("AP", "AP50", "AP75")


# ----------------------------------------------------------------------------- the rule itself
def test_names_are_compared_without_case_spaces_or_separators():
    assert name_key(" Traffic_Light ") == name_key("traffic-light") == name_key("TRAFFIC  light") == "traffic light"


def test_reordered_partial_and_disjoint():
    model = {0: "square", 1: "circle", 2: "triangle"}
    ids = {0: 1, 1: 2, 2: 3}
    voc = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "triangle"}]
    m = match_classes(model, voc, model_ids=ids)
    assert m.label_to_category == {0: 2, 1: 1, 2: 3} and not m.missing and not m.unused
    assert "square 1->2" in m.summary() and "circle 2->1" in m.summary()
    same = match_classes(model, [{"id": 1, "name": "Square"}, {"id": 2, "name": "circle"}, {"id": 3, "name": "triangle"}],
                         model_ids=ids)
    assert same.summary() is None  # nothing to say when the classes line up already
    part = match_classes(model, [{"id": 7, "name": "star"}, {"id": 9, "name": "circle"}], model_ids=ids)
    assert part.label_to_category == {1: 9} and part.missing == [7] and part.unused == [0, 2]
    assert "star" in part.summary() and "square" in part.summary()
    with pytest.raises(DatasetError, match=r"no class in common.*square, circle, triangle.*star, ring"):
        match_classes(model, [{"id": 1, "name": "star"}, {"id": 2, "name": "ring"}], model_ids=ids)


def test_class_map_synonyms_merges_and_mistakes(tmp_path):
    model = {0: "car", 1: "truck", 2: "person"}
    data = [{"id": 5, "name": "vehicle"}, {"id": 6, "name": "pedestrian"}]
    m = match_classes(model, data, parse_class_map("car=vehicle, truck=vehicle,person=pedestrian"))
    assert m.label_to_category == {0: 5, 1: 5, 2: 6}  # two model classes merged into one dataset class
    assert m.rows_for([5, 6]) == [0, 2]
    (tmp_path / "map.yaml").write_text("car: vehicle\nperson: pedestrian\n")
    assert parse_class_map(str(tmp_path / "map.yaml")) == {"car": "vehicle", "person": "pedestrian"}
    for bad in ("car", "car=", "=x", "car=a,car=b"):
        with pytest.raises(ValueError, match="--class-map"):
            parse_class_map(bad)
    with pytest.raises(DatasetError, match="'bus' is not one of the model's classes"):
        match_classes(model, data, {"bus": "vehicle"})
    with pytest.raises(DatasetError, match="used twice"):
        match_classes(model, [{"id": 1, "name": "car"}, {"id": 2, "name": "Car"}])


def test_a_model_without_names_is_matched_by_id_or_position():
    data = [{"id": 4, "name": "a"}, {"id": 9, "name": "b"}]
    by_id = match_classes({}, data, model_ids={0: 9, 1: 4})
    assert by_id.label_to_category == {0: 9, 1: 4} and "no class names" in by_id.summary()
    by_position = match_classes({}, data, num_labels=2)  # written before category ids were kept
    assert by_position.label_to_category == {0: 4, 1: 9}


# ----------------------------------------------------------------------------- every layout pair
def _renumber(coco_json: Path, out: Path, ids: dict[str, int]) -> Path:
    """A copy of a COCO json whose categories have the given ids (by name)."""
    data = json.loads(coco_json.read_text())
    old = {c["id"]: c["name"] for c in data["categories"]}
    data["categories"] = [dict(c, id=ids[c["name"]]) for c in data["categories"]]
    for a in data["annotations"]:
        a["category_id"] = ids[old[a["category_id"]]]
        a["area"] = a["bbox"][2] * a["bbox"][3]  # box areas: YOLO and VOC carry no segment area
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data))
    return out


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The same 24 images in three layouts, each numbering square, circle and triangle its own way."""
    root = tmp_path_factory.mktemp("classes")
    ann = write_synthetic_dataset(root / "src", 24, 128, 1, 4, seed=2000)
    images = root / "src" / "images"
    coco = root / "coco"
    _renumber(ann, coco / "annotations.json", {"triangle": 1, "square": 2, "circle": 3})
    (coco / "images").symlink_to(images)
    yolo_json = _renumber(ann, root / "yolo.json", {"circle": 0, "triangle": 1, "square": 2})
    yolo = write_yolo(yolo_json, images, root / "yolo")  # class index = id
    voc = write_voc(_renumber(ann, root / "voc.json", {"square": 1, "circle": 2, "triangle": 3}), images,
                    root / "voc")  # VOC numbers by sorted name: circle 1, square 2, triangle 3
    _renumber(ann, root / "ref" / "annotations.json", {"square": 1, "circle": 2, "triangle": 3})
    (root / "ref" / "images").symlink_to(images)
    return root, {"coco": coco, "yolo": yolo, "voc": voc}, root / "ref"


def _val(model: str, data: Path, out: Path, capsys, *extra) -> tuple[dict, str]:
    assert main(["val", "--model", model, "--data", str(data), "--val-fraction", "0", "--out", str(out),
                 "--no-progress", *extra]) == 0
    return json.loads((out / "stats.json").read_text()), capsys.readouterr().out


def test_val_gives_the_same_ap_in_every_layout_pair(layouts, tmp_path, capsys):
    root, copies, ref = layouts
    reference, _ = _val("bundled", ref, tmp_path / "ref", capsys)
    assert reference["AP"] > 0.5  # a real detector: equality below is not 0 == 0
    models = {"bundled": "bundled"}
    for name, data in copies.items():  # a model fine-tuned (at lr ~0) on each layout carries its ids
        run = tmp_path / f"run-{name}"
        assert main(["train", "--data", str(data), "--init", "bundled", "--epochs", "1", "--lr", "1e-12",
                     "--batch-size", "8", "--workers", "0", "--no-progress", "--eval-every", "0", "--no-augment",
                     "--val-fraction", "0", "--out", str(run)]) == 0
        models[name] = str(run / "last.safetensors")
        config = yolos.from_pretrained(models[name]).config
        ids = {config.class_names[i]: config.category_ids[i] for i in range(3)}
        assert ids == {c["name"]: c["id"] for c in resolve_dataset(data).read("train").coco["categories"]}
    capsys.readouterr()
    for model_name, model in models.items():
        for data_name, data in copies.items():
            stats, printed = _val(model, data, tmp_path / f"{model_name}-on-{data_name}", capsys)
            for key in STATS:
                assert stats[key] == pytest.approx(reference[key], abs=0.01), (model_name, data_name, key)
            reordered = model_name != data_name
            assert ("classes matched by name" in printed) == reordered, (model_name, data_name, printed)


def test_partly_overlapping_classes_are_scored_over_the_common_ones(layouts, tmp_path, capsys):
    from faster_coco_eval import COCO, COCOeval_faster

    root = tmp_path / "mixed"
    ann = write_synthetic_dataset(root, 16, 128, 1, 4, shapes=("star", "circle", "square"), seed=7)
    stats, printed = _val("bundled", root, tmp_path / "val", capsys)
    assert "not among the model's classes: star" in printed and "triangle" in printed
    assert {row["name"] for row in stats["per_class"]} == {"circle", "square"}
    # independent: the results against the ground truth restricted to the two common classes
    gt = json.loads(ann.read_text())
    common = {c["id"] for c in gt["categories"] if c["name"] != "star"}
    gt = dict(gt, categories=[c for c in gt["categories"] if c["id"] in common],
              annotations=[a for a in gt["annotations"] if a["category_id"] in common])
    results = json.loads((tmp_path / "val" / "results.json").read_text())
    assert results and {r["category_id"] for r in results} <= common
    ev = COCOeval_faster(COCO(gt), COCO(gt).loadRes(results), iouType="bbox", print_function=lambda *a: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert stats["AP"] == pytest.approx(float(ev.stats[0]), abs=1e-6)


def test_disjoint_classes_are_refused_and_a_class_map_joins_them(layouts, tmp_path, capsys):
    root, _, ref = layouts
    other = write_synthetic_dataset(tmp_path / "other", 4, 128, 1, 2, shapes=("star", "cross", "ring"), seed=3)
    assert main(["val", "--data", str(other.parent), "--val-fraction", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no class in common" in err[0] and "square" in err[0] and "star" in err[0]
    renamed = _renumber(ref / "annotations.json", tmp_path / "renamed" / "annotations.json",
                        {"square": 1, "circle": 2, "triangle": 3})
    data = json.loads(renamed.read_text())
    for c in data["categories"]:
        c["name"] = {"square": "box", "circle": "disc"}.get(c["name"], c["name"])
    renamed.write_text(json.dumps(data))
    (tmp_path / "renamed" / "images").symlink_to(ref / "images")
    reference, _ = _val("bundled", ref, tmp_path / "ref", capsys)
    mapped, printed = _val("bundled", renamed.parent, tmp_path / "mapped", capsys, "--class-map", "square=box,circle=disc")
    assert mapped["AP"] == pytest.approx(reference["AP"], abs=1e-9) and "square=box" in printed


def test_train_init_keeps_the_rows_of_shared_classes(tmp_path):
    root = tmp_path / "mixed"
    write_synthetic_dataset(root, 6, 128, 1, 3, shapes=("star", "triangle", "circle"), seed=1)
    train = resolve_dataset(root, val_fraction=0).dataset("train")
    model = yolos.from_pretrained("bundled")
    before = model.class_head.layers[-1]
    w, b = before.weight.detach().clone(), before.bias.detach().clone()
    hidden = model.class_head.layers[0].weight.detach().clone()
    fit_class_head(model, train, {}, head_priors=True, log=lambda m: None)
    after = model.class_head.layers[-1]
    names = model.config.class_names  # the dataset's order: star 1, triangle 2, circle 3
    assert names == {0: "star", 1: "triangle", 2: "circle"} and model.config.category_ids == [1, 2, 3]
    assert torch.equal(after.weight[1], w[2]) and torch.equal(after.weight[2], w[1])  # triangle, circle kept
    assert torch.equal(after.weight[3], w[3]) and torch.equal(after.bias[3], b[3])  # no-object kept
    assert not torch.equal(after.weight[0], w[0])  # star: fresh
    assert float(after.bias[0].detach()) == pytest.approx(float((b[1] + b[2]) / 2))  # at the kept rows' mean
    assert torch.equal(model.class_head.layers[0].weight, hidden)  # hidden layers kept


def test_predict_and_to_coco_after_init_use_the_datasets_ids(layouts, tmp_path):
    _, copies, _ = layouts
    run = tmp_path / "run"
    assert main(["train", "--data", str(copies["voc"]), "--init", "bundled", "--epochs", "1", "--lr", "1e-12",
                 "--batch-size", "8", "--workers", "0", "--no-progress", "--eval-every", "0", "--no-augment",
                 "--out", str(run)]) == 0
    model = yolos.from_pretrained(run / "best.safetensors")
    voc_ids = {"circle": 1, "square": 2, "triangle": 3}
    image = next((copies["voc"] / "JPEGImages").iterdir())
    det = model.predict(image, threshold=0.3)[0]
    assert len(det) > 0
    assert [voc_ids[n] for n in det.label_names] == det.category_ids.tolist()
    assert [r["category_id"] for r in det.to_coco(1)] == det.category_ids.tolist()
    assert main(["predict", str(image), "--model", str(run / "best.safetensors"), "--out", str(tmp_path / "p"),
                 "--threshold", "0.3"]) == 0
    entries = json.loads((tmp_path / "p" / "predictions.json").read_text())["images"][0]["detections"]
    assert entries and all(voc_ids[e["label"]] == e["category_id"] for e in entries)
