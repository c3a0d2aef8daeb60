"""The import rule of DEVELOPING.md, read from the source: a module imports only from its own
package and from packages in lower layers (function-level imports included)."""
from __future__ import annotations

import ast
from pathlib import Path

import yolos

ROOT = Path(__file__).resolve().parents[1] / "yolos"

# Lowest first. A package may import from any package in an earlier layer, never a later one.
LAYERS = [
    {"config", "defaults", "errors", "validate", "box_ops", "files", "distributed", "run_dir", "resize", "images",
     "coco_names", "hardware"},
    {"model"},
    {"checkpoint"},
    {"data"},
    {"inference"},
    {"evaluation"},
    {"train"},
    {"export"},
    {"analysis", "serve"},
    {"api"},
    {"scale"},
    {"cli"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(path: Path) -> str:
    """The package (or top-level module) a file belongs to: ``model``, ``box_ops``, ..."""
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(ROOT).parent.parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = package[: len(package) - node.level + 1]
                parts = list(base) + (node.module.split(".") if node.module else [])
                names = [parts + [a.name] for a in node.names] if not parts else [parts]
            elif node.module and node.module.split(".")[0] == "yolos":
                names = [node.module.split(".")[1:] or [a.name for a in node.names]]
            else:
                continue
            for parts in names:
                if parts:
                    found.add(parts[0])
                elif node.module is None:
                    found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "yolos" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    assert units <= set(LAYER_OF), f"add to LAYERS: {sorted(units - set(LAYER_OF))}"


def test_imports_flow_downwards_only():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        if unit == "__init__":  # the package's lazy public names may point anywhere
            continue
        for target in _imported_units(path):
            if target in LAYER_OF and target != unit and LAYER_OF[target] > LAYER_OF[unit]:
                bad.append(f"{path.relative_to(ROOT.parent)} ({unit}, layer {LAYER_OF[unit]}) imports "
                           f"{target} (layer {LAYER_OF[target]})")
    assert not bad, "\n".join(bad)


def test_the_reader_sees_relative_and_absolute_imports(tmp_path):
    """The import reader itself, on a file written here (so the rule test cannot pass vacuously)."""
    assert {"model", "config", "errors"} <= _imported_units(ROOT / "checkpoint" / "native.py")
    assert "errors" in _imported_units(ROOT / "images.py")
    assert "distributed" in _imported_units(ROOT / "train" / "loop.py")


def test_the_api_object_and_a_light_import(tmp_path):
    """``import yolos`` loads neither inference nor checkpoint; the object ``create_model`` and
    ``from_pretrained`` return (``yolos.Detector``, the network plus its conveniences) predicts,
    saves and loads back in a fresh process; the network class itself has no such methods."""
    import subprocess
    import sys

    code = ("import sys, torch, yolos; print(sorted(k for k in sys.modules if k.startswith(('yolos.inference', "
            "'yolos.checkpoint')))); m = yolos.create_model('micro').eval(); "
            f"m.save(r'{tmp_path / 'm.safetensors'}'); m.save_pretrained(r'{tmp_path / 'hf'}'); "
            "print(len(m.predict(torch.rand(3, 64, 64), threshold=0.0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "[]"
    assert (tmp_path / "m.safetensors").is_file() and (tmp_path / "hf" / "config.json").is_file()
    back = yolos.from_pretrained(tmp_path / "m.safetensors")
    assert isinstance(back, yolos.Detector) and isinstance(back, yolos.YOLOS) and back.num_parameters() > 0
    assert not any(hasattr(yolos.YOLOS, name) for name in ("predict", "save", "save_pretrained"))
