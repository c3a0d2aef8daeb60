"""Bad inputs and faults, table-driven: each ends in correct behaviour or in one line naming the
file, field or option, with a non-zero exit, and nothing already written is lost."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from yolos.cli import main
from yolos.data.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = str(Path(__file__).resolve().parents[1] / "yolos" / "assets" / "yolos-micro-shapes.safetensors")
TRAIN = ["--model", "micro", "--batch-size", "2", "--workers", "0", "--train-sizes", "64", "--eval-size", "64",
         "--no-augment", "--no-progress", "--num-det-tokens", "4", "--val-fraction", "0"]


@pytest.fixture(autouse=True)
def _restore_pixel_limit():
    """``--max-pixels`` sets a process-wide limit; in-process CLI calls must not leak it."""
    from yolos import images

    old = images._max_pixels
    yield
    images._max_pixels = old


def cli(argv, capsys) -> tuple[int, str]:
    """Run ``yolos ARGV`` in-process: (exit code, what it printed to stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    return code, capsys.readouterr().err


def one_error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"yolos {command}: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "weights_only=False" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "a.png", "a_2.jpg"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / name)
    return folder


@pytest.fixture
def shapes(tmp_path) -> Path:
    root = tmp_path / "ds"
    write_synthetic_dataset(root, num_images=4, image_size=64, max_objects=2, seed=0)
    return root


def _bomb(path: Path, side: int = 8000) -> Path:
    """A small PNG (~70 KB) that decodes to side x side pixels (64 MP by default)."""
    Image.new("L", (side, side)).save(path)
    return path


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------------------ predict
@pytest.mark.parametrize("extra, option", [
    (["--threshold", "2"], "--threshold"), (["--threshold", "-1"], "--threshold"),
    (["--threshold", "nan"], "--threshold"), (["--top-k", "-1"], "--top-k"), (["--top-k", "0"], "--top-k"),
    (["--batch-size", "0"], "--batch-size"), (["--short-side", "5"], "--short-side"),
    (["--long-side", "100000"], "--long-side"), (["--max-pixels", "-3"], "--max-pixels"),
])
def test_predict_options_are_checked_first(photos, tmp_path, capsys, extra, option):
    code, err = cli(["predict", photos, "--out", tmp_path / "out", *extra], capsys)
    assert code == 2 and f"argument {option}" in err
    assert not (tmp_path / "out").exists()


def test_predict_never_writes_over_its_inputs(photos, capsys):
    before = snapshot(photos)
    code, err = cli(["predict", photos, "--out", photos, "--model", MODEL], capsys)
    assert code == 2 and "--out" in one_error_line(err, "predict") and "overwrite" in err
    assert snapshot(photos) == before
    assert not (photos / ".yolos-train.lock").exists()
    # an input called predictions.json is protected too, even with --no-images
    (photos / "predictions.json").write_text("mine")
    code, err = cli(["predict", photos / "predictions.json", "--out", photos, "--no-images", "--model", MODEL],
                    capsys)
    assert (photos / "predictions.json").read_text() == "mine"


def test_predict_twice_into_one_folder_keeps_the_first(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["predict", photos / "a.jpg", "--out", out, "--model", MODEL], capsys)[0] == 0
    first = snapshot(out)
    code, err = cli(["predict", photos / "a.png", "--out", out, "--model", MODEL], capsys)
    assert code == 0 and snapshot(out) == first and "out2" in err
    assert (tmp_path / "out2" / "a.png").is_file()


def test_predict_names_are_unique_and_keep_extensions(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code, _ = cli(["predict", photos, "--out", out, "--model", MODEL, "--threshold", "0.1"], capsys)
    assert code == 0
    report = json.loads((out / "predictions.json").read_text())
    annotated = [r["annotated"] for r in report["images"]]
    assert sorted(annotated) == ["a.jpg", "a.png", "a_2.jpg"]
    assert len({r["file"] for r in report["images"]}) == 3
    assert Image.open(out / "a.png").format == "PNG" and Image.open(out / "a.jpg").format == "JPEG"


def test_predict_same_names_from_two_folders(tmp_path, capsys):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / sub / "a.jpg")
    out = tmp_path / "out"
    code, _ = cli(["predict", tmp_path / "x", tmp_path / "y" / "a.jpg", "--out", out, "--model", MODEL], capsys)
    assert code == 0
    names = sorted(r["annotated"] for r in json.loads((out / "predictions.json").read_text())["images"])
    assert names == ["x/a.jpg", "y/a.jpg"] and (out / "x" / "a.jpg").is_file() and (out / "y" / "a.jpg").is_file()


def test_predict_out_is_a_file(photos, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep")
    code, err = cli(["predict", photos, "--out", target, "--model", MODEL], capsys)
    assert code == 2 and "--out" in one_error_line(err, "predict") and target.read_text() == "keep"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("command", ["predict", "val", "train"])
def test_device_that_is_not_there(shapes, tmp_path, capsys, command):
    args = {"predict": ["predict", shapes / "images", "--out", tmp_path / "o"],
            "val": ["val", "--model", MODEL, "--data", shapes],
            "train": ["train", "--data", shapes, "--out", tmp_path / "run", *TRAIN]}[command]
    code, err = cli([*args, "--device", "cuda"], capsys)
    assert code == 2 and "--device" in one_error_line(err, command)
    assert not (tmp_path / "run").exists()


def test_predict_skips_bad_images_and_goes_on(photos, tmp_path, capsys):
    (photos / "broken.jpg").write_bytes((photos / "a.jpg").read_bytes()[:200])
    _bomb(photos / "bomb.png")
    Image.new("RGB", (1, 1)).save(photos / "dot.png")
    out = tmp_path / "out"
    code, err = cli(["predict", photos, "--out", out, "--model", MODEL], capsys)
    assert code == 1  # something failed, and said so
    report = json.loads((out / "predictions.json").read_text())
    assert len(report["images"]) == 3  # the good ones
    failed = {Path(f["file"]).name: f["error"] for f in report["failed"]}
    assert set(failed) == {"broken.jpg", "bomb.png", "dot.png"}
    assert "megapixels" in failed["bomb.png"] and "too small" in failed["dot.png"]
    assert "Traceback" not in err


def test_predict_pixel_limit_can_be_raised(tmp_path, capsys):
    Image.new("RGB", (300, 200)).save(tmp_path / "p.png")
    code, err = cli(["predict", tmp_path / "p.png", "--out", tmp_path / "o1", "--model", MODEL,
                     "--max-pixels", "50000"], capsys)
    assert code == 1 and "--max-pixels" in err
    code, _ = cli(["predict", tmp_path / "p.png", "--out", tmp_path / "o2", "--model", MODEL,
                   "--max-pixels", "0"], capsys)
    assert code == 0


@pytest.mark.parametrize("content, says", [
    (b"hello\n", "not a checkpoint"), (b"", "empty file"), (os.urandom(256), "not a checkpoint"),
    (b"PK\x03\x04" + os.urandom(64), "truncated or damaged"),
])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".txt"])
def test_model_file_that_is_not_a_checkpoint(tmp_path, capsys, content, says, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(content)
    code, err = cli(["predict", "--model", path, "--out", tmp_path / "o"], capsys)
    line = one_error_line(err, "predict")
    assert code == 2 and str(path) in line and (says in line or "not a checkpoint" in line), line


# --------------------------------------------------------------------------------------- val
def test_val_on_a_dataset_without_images(shapes, capsys):
    _edit_json(shapes / "annotations.json", lambda d: d.update(images=[], annotations=[]))
    code, err = cli(["val", "--model", MODEL, "--data", shapes], capsys)
    assert code == 2 and "no images" in one_error_line(err, "val")


def test_val_on_a_dataset_without_annotations(shapes, capsys):
    _edit_json(shapes / "annotations.json", lambda d: d.update(annotations=[]))
    code, err = cli(["val", "--model", MODEL, "--data", shapes], capsys)
    assert code == 2 and "no (non-crowd) annotations" in one_error_line(err, "val")


def test_val_out_is_a_file(shapes, tmp_path, capsys):
    target = tmp_path / "stats.txt"
    target.write_text("keep")
    code, err = cli(["val", "--model", MODEL, "--data", shapes, "--out", target], capsys)
    assert code == 2 and "--out" in one_error_line(err, "val") and target.read_text() == "keep"


@pytest.mark.parametrize("extra, option", [(["--batch-size", "0"], "--batch-size"),
                                           (["--eval-size", "3"], "--eval-size")])
def test_val_options(shapes, capsys, extra, option):
    code, err = cli(["val", "--model", MODEL, "--data", shapes, *extra], capsys)
    assert code == 2 and f"argument {option}" in err


# ------------------------------------------------------------------------------------- train
@pytest.mark.parametrize("extra, option", [
    (["--epochs", "0"], "--epochs"), (["--batch-size", "0"], "--batch-size"), (["--repeat", "0"], "--repeat"),
    (["--num-det-tokens", "0"], "--num-det-tokens"), (["--max-train-images", "0"], "--max-train-images"),
    (["--train-sizes", "7"], "--train-sizes"), (["--train-sizes", "a,b"], "--train-sizes"),
    (["--lr", "-1"], "--lr"), (["--lr", "nan"], "--lr"), (["--workers", "-1"], "--workers"),
    (["--eval-size", "0"], "--eval-size"), (["--recipe", "fast"], "--recipe"),
])
def test_train_options_are_checked_first(shapes, tmp_path, capsys, extra, option):
    code, err = cli(["train", "--data", shapes, "--out", tmp_path / "run", *TRAIN, *extra], capsys)
    assert code == 2 and f"argument {option}" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("eval_every", ["1", "0"])
def test_train_with_no_categories(shapes, tmp_path, capsys, eval_every):
    _edit_json(shapes / "annotations.json", lambda d: d.update(categories=[], annotations=[]))
    code, err = cli(["train", "--data", shapes, "--out", tmp_path / "run", *TRAIN, "--eval-every", eval_every], capsys)
    assert code == 2 and "'categories' is empty" in one_error_line(err, "train")
    assert not (tmp_path / "run").exists()  # no empty run folder left behind


def test_train_out_is_a_file(shapes, tmp_path, capsys):
    (tmp_path / "run").write_text("keep")
    code, err = cli(["train", "--data", shapes, "--out", tmp_path / "run", *TRAIN], capsys)
    assert code == 2 and "--out" in one_error_line(err, "train") and (tmp_path / "run").read_text() == "keep"


def test_a_new_run_never_replaces_an_earlier_one(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1"], capsys)[0] == 0
    first = snapshot(run)
    code, err = cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1", "--seed", "3"], capsys)
    assert code == 0 and snapshot(run) == first
    assert (tmp_path / "run2" / "last.safetensors").is_file()
    assert not (run / ".yolos-train.lock").exists() and not (tmp_path / "run2" / ".yolos-train.lock").exists()


def test_a_locked_folder_is_not_shared(shapes, tmp_path, capsys):
    import socket

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".yolos-train.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        code, _ = cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1"], capsys)
        assert code == 0 and (tmp_path / "run2" / "last.safetensors").is_file()
        assert not (run / "last.safetensors").exists()
        code, err = cli(["train", "--data", shapes, "--out", run, *TRAIN, "--resume"], capsys)
        assert code == 2 and "being written by another run" in one_error_line(err, "train")
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and a new run takes the folder over
    code, _ = cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1"], capsys)
    assert code == 0 and (run / "last.safetensors").is_file()


def test_resume_says_what_it_keeps_and_can_extend_epochs(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1", "--lr", "1e-3"], capsys)[0] == 0
    try:
        code = main(["train", "--data", str(shapes), "--out", str(run), *TRAIN, "--epochs", "2", "--lr", "5e-4",
                     "--resume"])
    finally:
        printed = capsys.readouterr()
    assert code == 0
    text = printed.out + printed.err
    assert "--lr 0.0005: ignored" in text and "continues to 2 epochs" in text
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["config"]["lr"] == 1e-3 and state["config"]["epochs"] == 2
    code, err = cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1", "--resume"], capsys)
    assert code == 2 and "--epochs 1" in one_error_line(err, "train")


@pytest.mark.parametrize("damage", ["truncate", "empty", "random", "text"])
def test_damaged_state_says_what_to_do(shapes, tmp_path, capsys, damage):
    run = tmp_path / "run"
    assert cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1"], capsys)[0] == 0
    state = run / "state.pt"
    data = state.read_bytes()
    state.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "random": os.urandom(2048),
                       "text": b"not a state\n"}[damage])
    kept = snapshot(run)
    code, err = cli(["train", "--data", shapes, "--out", run, *TRAIN, "--resume"], capsys)
    line = one_error_line(err, "train")
    assert code == 2 and "state.pt" in line and "--init" in line and "last.safetensors" in line
    assert snapshot(run) == kept


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.parametrize("fault", ["broken", "tiny", "bomb"])
def test_bad_training_image_gives_one_line(shapes, tmp_path, capsys, workers, fault):
    target = shapes / "images" / "000002.jpg"
    if fault == "broken":
        target.write_bytes(target.read_bytes()[:100])
    elif fault == "tiny":
        Image.new("RGB", (1, 1)).save(target, format="JPEG")
    else:
        _bomb(target.with_suffix(".png"))
        target.unlink()
        target.with_suffix(".png").rename(target)
    args = [a if a != "0" or i != TRAIN.index("--workers") + 1 else workers for i, a in enumerate(TRAIN)]
    code, err = cli(["train", "--data", shapes, "--out", tmp_path / "run", *args, "--epochs", "1"], capsys)
    line = one_error_line(err, "train")
    assert code == 2 and "000002.jpg" in line, line
    assert {"broken": "not a readable image", "tiny": "smaller than one", "bomb": "megapixels"}[fault] in line


def test_ctrl_c_saves_the_state_and_resume_finishes(shapes, tmp_path):
    run = tmp_path / "run"
    code = ("import sys, torch; torch.set_num_threads(1); from yolos.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    argv = [sys.executable, "-c", code, "train", "--data", str(shapes), "--out", str(run), *TRAIN,
            "--epochs", "400", "--log-every-steps", "1"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            log = run / "log.jsonl"
            if log.exists() and sum(1 for _ in log.open()) >= 5:  # a few steps done
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: the training state" in err and "--resume" in err and "Traceback" not in err
    state = torch.load(run / "state.pt", weights_only=True)
    steps_logged = max(json.loads(ln)["global_step"] for ln in (run / "log.jsonl").read_text().splitlines())
    assert state["global_step"] >= steps_logged - 1  # at most the step under way is lost
    assert state["global_step"] >= 3
    done = subprocess.run(argv[:-4] + ["--epochs", str(state["epoch"] + 1), "--resume"], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    assert torch.load(run / "state.pt", weights_only=True)["epoch"] == state["epoch"] + 1


# ----------------------------------------------------------------------------- other commands
@pytest.mark.parametrize("argv, option", [
    (["benchmark", "--images", "0"], "argument --images"), (["benchmark", "--threads", "0"], "argument --threads"),
    (["benchmark", "--size", "0", "64"], "argument --size"), (["flops", "--max-images", "0"], "argument --max-images"),
    (["flops", "--size", "5", "64"], "argument --size"),
    (["analyze", "--data", "x", "--out", "y", "--score-threshold", "3"], "argument --score-threshold"),
    (["analyze", "--data", "x", "--out", "y", "--tokens", "-1"], "argument --tokens"),
])
def test_other_commands_check_options(capsys, argv, option):
    code, err = cli(argv, capsys)
    assert code == 2 and option in err


# ------------------------------------------------------------------------------------ export
def test_export_size_is_bounded_before_anything_loads(tmp_path, capsys):
    start = time.perf_counter()
    code, err = cli(["export", "--size", "100000", "100000", "--out", tmp_path / "m.onnx"], capsys)
    assert code == 2 and "--size" in one_error_line(err, "export")
    assert time.perf_counter() - start < 10 and not (tmp_path / "m.onnx").exists()


def test_export_out_may_be_a_folder(tmp_path, capsys):
    code, _ = cli(["export", "--size", "64", "64", "--out", tmp_path], capsys)
    assert code == 0 and list(tmp_path.glob("*.onnx"))


# ------------------------------------------------------------------------------- Python API
def test_api_predict_on_error(tmp_path):
    import warnings

    import yolos

    model = yolos.from_pretrained(MODEL)
    good = Image.new("RGB", (64, 64), (20, 200, 20))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(yolos.ImageError, match="broken.jpg"):
        model.predict([good, broken])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = model.predict([good, broken, good], on_error="skip")
    assert results[1] is None and results[0] is not None and results[2] is not None
    assert any("broken.jpg" in str(w.message) for w in caught)
    seen = []
    model.predict([broken, good], on_error=lambda i, source, err: seen.append((i, str(err))))
    assert seen and seen[0][0] == 0 and "broken.jpg" in seen[0][1]
    with pytest.raises(ValueError, match="on_error"):
        model.predict([good], on_error="ignore")


@pytest.mark.parametrize("kwargs, name", [({"threshold": 2}, "threshold"), ({"threshold": float("nan")}, "threshold"),
                                          ({"top_k": -1}, "top_k"), ({"batch_size": 0}, "batch_size"),
                                          ({"short_side": 3}, "short_side")])
def test_api_predict_options(kwargs, name):
    import yolos

    model = yolos.from_pretrained(MODEL)
    with pytest.raises(ValueError, match=name):
        model.predict(Image.new("RGB", (64, 64)), **kwargs)


def test_pixel_limit_in_the_api(tmp_path):
    from yolos import images

    path = _bomb(tmp_path / "big.png", side=7000)  # 49 MP
    with pytest.raises(images.ImageError, match="megapixels"):
        images.load_image(path)
    with pytest.raises(images.ImageError, match="megapixels"):
        images.load_image(np.zeros((7000, 7000), dtype=np.uint8))
    old = images._max_pixels
    try:
        images.set_max_pixels(0)
        assert images.load_image(path).size == (7000, 7000)
        images.set_max_pixels(100)
        with pytest.raises(images.ImageError):
            images.load_image(Image.new("RGB", (20, 20)))
    finally:
        images._max_pixels = old


@pytest.mark.parametrize("check, value, ok", [
    ("positive_int", 1, 1), ("positive_int", "3", 3), ("positive_int", 2.0, 2), ("positive_int", 0, None),
    ("positive_int", 2.5, None), ("positive_int", "3.5", None), ("positive_int", True, None),
    ("positive_int", None, None), ("non_negative_int", "0", 0), ("non_negative_int", -1, None),
    ("threshold", "0.5", 0.5), ("threshold", 1, 1.0), ("threshold", "inf", None), ("threshold", "x", None),
    ("positive_float", "1e-3", 1e-3), ("positive_float", 0, None), ("non_negative_float", 0, 0.0),
    ("image_side", 16, 16), ("image_side", 15, None), ("image_side", 8193, None),
])
def test_validate(check, value, ok):
    from yolos import validate

    if ok is None:
        with pytest.raises(ValueError, match=r"^opt: "):
            getattr(validate, check)(value, "opt")
    else:
        assert getattr(validate, check)(value, "opt") == ok
