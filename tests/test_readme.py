"""The README is a guide that works: its "Train on your data" commands run, as written, on a tiny
dataset in each of the three layouts (with a local checkpoint for --init and tiny sizes appended,
since the last value of an option wins), and every path and module the guides name exists."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from layouts import SPARSE_IDS, sparse_coco, write_voc, write_yolo

from yolos import create_model
from yolos.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TINY = ["--epochs", "1", "--batch-size", "4", "--train-sizes", "64", "--train-max-size", "64", "--eval-size", "64",
        "--eval-max-size", "64", "--workers", "0", "--no-progress"]


def guide_commands() -> list[list[str]]:
    """The command lines of the block that follows the README's "guide" marker."""
    block = README.split("<!-- guide:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line.split("  #")[0]) for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("init") / "tiny.safetensors"
    create_model("micro", hidden_size=32, depth=2, num_heads=2, mlp_dim=64, num_det_tokens=8,
                 image_size=(64, 64)).save(path)
    return path


@pytest.mark.parametrize("layout", ["coco", "yolo", "voc"])
def test_train_on_your_data_commands_run_as_written(layout, tmp_path, tiny_init, monkeypatch, capsys):
    coco = sparse_coco(tmp_path / "coco", num_images=8, image_size=64)
    my_data = {"coco": coco.parent,
               "yolo": write_yolo(coco, coco.parent / "images", tmp_path / "yolo").parent,
               "voc": write_voc(coco, coco.parent / "images", tmp_path / "voc")}[layout]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_data").symlink_to(my_data)
    (tmp_path / "new_photos").symlink_to(coco.parent / "images")
    commands = guide_commands()
    assert [c[:2] for c in commands] == [["yolos", "data"], ["yolos", "train"], ["yolos", "val"], ["yolos", "predict"]]
    for argv in commands:
        argv = [str(tiny_init) if a == "yolos-ti" else a for a in argv[1:]]
        # tiny sizes for a one-epoch model, whose scores stay below the default threshold
        argv += {"train": TINY, "val": ["--no-progress"], "predict": ["--threshold", "0.01"]}.get(argv[0], [])
        assert main(argv) == 0, (argv, capsys.readouterr())
    out = capsys.readouterr().out
    assert "ready to train" in out
    stats = json.loads((tmp_path / "runs" / "mine-val" / "stats.json").read_text())
    assert len(stats["per_class"]) == 3  # the per-class table, one row per category
    assert (tmp_path / "runs" / "mine-val" / "confusion_matrix.png").is_file()
    predictions = json.loads((tmp_path / "runs" / "mine-predict" / "predictions.json").read_text())
    ids = {d["category_id"] for image in predictions["images"] for d in image["detections"]}
    want = set(SPARSE_IDS.values()) if layout != "voc" else {1, 2, 3}  # VOC: sorted names, ids from 1
    assert ids and ids <= want, ids


def _named_paths(text: str) -> set[str]:
    """Repository paths a guide names: in links and in backquotes, those that start with a
    top-level folder of the repository or name a root file."""
    tops = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")}
    found = set(re.findall(r"\]\(([^)#\s]+)", text))
    found |= {m for m in re.findall(r"`([A-Za-z0-9_./-]+)`", text) if m.split("/")[0] in tops}
    return {f for f in found if "://" not in f}


@pytest.mark.parametrize("guide", ["README.md", "DEVELOPING.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))])
def test_every_path_and_module_a_guide_names_exists(guide):
    path = ROOT / guide if (ROOT / guide).exists() else ROOT / "docs" / guide
    text = path.read_text(encoding="utf-8")
    missing = [p for p in sorted(_named_paths(text)) if not ((path.parent / p).exists() or (ROOT / p).exists())]
    modules = set(re.findall(r"`(yolos(?:\.[a-z_]+)+)", text))
    for module in sorted(modules):
        parts = module.split(".")
        # a module path, or a module path followed by a name defined in it
        if not any((ROOT / Path(*parts[:n])).with_suffix(".py").exists() or (ROOT / Path(*parts[:n])).is_dir()
                   for n in (len(parts), len(parts) - 1)):
            missing.append(module)
    assert not missing, f"{guide} names what does not exist: {missing}"
    assert "../shared" not in text and "USERS.md" not in text and "YOLOS.md" not in text
