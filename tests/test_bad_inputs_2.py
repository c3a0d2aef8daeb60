"""Bad inputs, round two: files this run did not create, resumed jobs that are other jobs,
numbers that cannot be right, sizes without bounds, and inputs that hang. Each case ends in the
right behaviour or one line naming the problem, and nothing already there is lost."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_bad_inputs import MODEL, TRAIN, cli, one_error_line

from yolos.cli import main
from yolos.data.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / name)
    return folder


@pytest.fixture
def shapes(tmp_path) -> Path:
    write_synthetic_dataset(tmp_path / "ds", num_images=4, image_size=64, max_objects=2, seed=0)
    return tmp_path / "ds"


# ------------------------------------------------------------------------------ data loss
def test_predict_never_replaces_a_file_it_did_not_create(photos, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jpg").write_bytes(b"my own picture")
    code, err = cli(["predict", photos, "--out", out, "--model", MODEL], capsys)
    assert code == 0 and (out / "a.jpg").read_bytes() == b"my own picture" and "out2" in err
    assert (tmp_path / "out2" / "a.jpg").is_file()


def test_train_never_replaces_an_unrelated_metrics_png(shapes, tmp_path, capsys):
    desk = tmp_path / "desk"
    desk.mkdir()
    (desk / "metrics.png").write_bytes(b"a plot of mine")
    code, err = cli(["train", "--data", shapes, "--out", desk, *TRAIN, "--epochs", "1"], capsys)
    assert code == 0 and (desk / "metrics.png").read_bytes() == b"a plot of mine"
    assert (tmp_path / "desk2" / "metrics.png").is_file()


def test_a_hard_link_of_an_input_in_out_is_an_input(photos, tmp_path, capsys):
    out = tmp_path / "backup"
    out.mkdir()
    os.link(photos / "a.jpg", out / "a.jpg")  # cp -al
    before = (photos / "a.jpg").read_bytes()
    code, err = cli(["predict", photos / "a.jpg", "--out", out, "--model", MODEL], capsys)
    assert code == 2 and "overwrite an input" in one_error_line(err, "predict")
    assert (photos / "a.jpg").read_bytes() == before


def test_a_link_among_the_inputs_is_written_inside_out(photos, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (40, 40), (10, 200, 30)).save(data / "cat.jpg")
    os.symlink("../data/cat.jpg", photos / "cat.jpg")
    before = (data / "cat.jpg").read_bytes()
    out = tmp_path / "out"
    assert cli(["predict", photos, "--out", out, "--model", MODEL], capsys)[0] == 0
    assert (out / "cat.jpg").is_file() and (data / "cat.jpg").read_bytes() == before
    assert all(out in p.resolve().parents for p in out.rglob("*") if p.is_file())


def test_a_damaged_record_line_loses_nothing_after_it(photos, tmp_path, capsys):
    out = tmp_path / "job"
    for name in ("c.jpg", "d.jpg"):
        Image.new("RGB", (48, 48), (200, 10, 10)).save(photos / name)
    assert cli(["predict", photos, "--out", out, "--model", MODEL, "--no-images"], capsys)[0] == 0
    part = out / "records" / "part-00000.jsonl"
    lines = part.read_text().splitlines()
    assert len(lines) == 4
    part.write_text("\n".join([lines[0], "{damaged", "[1, 2]", *lines[2:]]) + "\n")  # line 2 lost, 2 junk lines
    code, err = cli(["predict", photos, "--out", out, "--model", MODEL, "--no-images", "--resume"], capsys)
    assert code == 0 and "damaged line(s) skipped" in err and "Traceback" not in err
    assert "3 of 4 images already done" in err  # the lines after the damage were kept
    report = json.loads((out / "predictions.json").read_text())
    assert len(report["images"]) == 4


# ------------------------------------------------------------------------ the same job
def test_resume_with_other_settings_is_another_job(photos, tmp_path, capsys):
    out = tmp_path / "job"
    assert cli(["predict", photos, "--out", out, "--model", MODEL, "--no-images"], capsys)[0] == 0
    for extra, words in ((["--threshold", "0.3"], "threshold 0.5 -> 0.3"), (["--model", "yolos-s"], "model")):
        args = ["predict", photos, "--out", out, "--no-images", "--resume", *(["--model", MODEL] if "--model" not in
                                                                             extra else []), *extra]
        code, err = cli(args, capsys)
        assert code == 2 and words in one_error_line(err, "predict"), err


def test_resume_from_elsewhere_with_a_relative_data_path(shapes, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    assert cli(["train", "--data", "ds", "--out", run, *TRAIN, "--epochs", "1"], capsys)[0] == 0
    other = tmp_path / "elsewhere"
    other.mkdir()
    write_synthetic_dataset(other / "ds", num_images=4, image_size=64, max_objects=2, seed=9)  # another 'ds'
    monkeypatch.chdir(other)
    code, err = cli(["train", "--out", run, "--data", "ds", *TRAIN, "--epochs", "2", "--resume"], capsys)
    assert code == 2 and "was trained on" in one_error_line(err, "train")  # not another dataset silently
    code, err = cli(["train", "--out", run, "--data", shapes, *TRAIN, "--epochs", "2", "--resume"], capsys)
    assert code == 0, err  # the run's own dataset, given by another path: fine
    assert json.loads((run / "log.jsonl").read_text().splitlines()[0])["config"]["data"] == str(shapes.resolve())


def test_resume_honours_epochs_equal_to_the_default(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1"], capsys)[0] == 0
    code, _ = cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "10", "--resume"], capsys)
    assert code == 0 and torch.load(run / "state.pt", weights_only=True)["epoch"] == 10


def test_resume_after_a_category_was_added_is_refused(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1"], capsys)[0] == 0
    ann = shapes / "annotations.json"
    data = json.loads(ann.read_text())
    data["categories"].append({"id": 4, "name": "star"})
    data["annotations"][0]["category_id"] = 4
    ann.write_text(json.dumps(data))
    code, err = cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "2", "--resume"], capsys)
    assert code == 2 and "star" in one_error_line(err, "train")


def test_an_edited_log_does_not_stop_a_resume(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1"], capsys)[0] == 0
    with open(run / "log.jsonl", "a") as f:
        f.write("{half a line\n[1, 2, 3]\n")
    code, err = cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "2", "--resume"], capsys)
    assert code == 0 and "Traceback" not in err


# ----------------------------------------------------------------- numbers that cannot be right
def test_duplicate_annotation_ids_are_refused(shapes, capsys):
    ann = shapes / "annotations.json"
    data = json.loads(ann.read_text())
    data["annotations"][1]["id"] = data["annotations"][0]["id"]  # two files joined
    ann.write_text(json.dumps(data))
    code, err = cli(["val", "--model", MODEL, "--data", shapes], capsys)
    assert code == 2 and "duplicate annotation id" in one_error_line(err, "val")


def test_string_annotation_ids_are_numbered_for_evaluation(shapes, capsys):
    ann = shapes / "annotations.json"
    data = json.loads(ann.read_text())
    for a in data["annotations"]:
        a["id"] = f"ann-{a['id']}"
    ann.write_text(json.dumps(data))
    code, _ = cli(["val", "--model", MODEL, "--data", shapes, "--no-progress"], capsys)
    assert code == 0


def _nan_model(tmp_path) -> Path:
    import yolos

    model = yolos.from_pretrained(MODEL)
    with torch.no_grad():
        model.box_head.layers[-1].bias.fill_(float("nan"))
    model.save(tmp_path / "nan.safetensors")
    return tmp_path / "nan.safetensors"


def test_nan_outputs_are_never_written_as_boxes(photos, shapes, tmp_path, capsys):
    model = _nan_model(tmp_path)
    code, err = cli(["predict", photos, "--out", tmp_path / "p", "--model", model, "--threshold", "0"], capsys)
    assert code == 1 and "not finite" in err
    report = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert report["images"] == [] and len(report["failed"]) == 2
    code, err = cli(["val", "--model", model, "--data", shapes, "--out", tmp_path / "v", "--no-progress"], capsys)
    assert code == 2 and "not finite" in one_error_line(err, "val") and not (tmp_path / "v" / "results.json").exists()


def test_float_pixels_outside_0_1_and_string_options(photos):
    import yolos
    from yolos.errors import ImageError

    model = yolos.from_pretrained(MODEL)
    with pytest.raises(ImageError, match="0..1"):
        model.predict(np.full((64, 64, 3), 200.0, dtype=np.float32))
    assert model.predict(np.full((64, 64, 3), 0.5, dtype=np.float32), threshold="0.3")[0] is not None


@pytest.mark.parametrize("change, words", [
    ({"depth": 10**6}, "depth"), ({"patch_size": 0}, "patch_size"), ({"num_heads": 0}, "num_heads"),
    ({"num_det_tokens": -5}, "num_det_tokens"), ({"image_size": [0, 128]}, "image_size"),
])
def test_model_metadata_is_checked_before_anything_is_built(tmp_path, change, words):
    from safetensors.torch import load_file, save_file

    import yolos
    from yolos.errors import CheckpointError

    path = tmp_path / "m.safetensors"
    yolos.from_pretrained(MODEL).save(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["yolos_config"])
    config.update(change)
    meta["yolos_config"] = json.dumps(config)
    save_file(load_file(path), str(path), metadata=meta)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=words):
        yolos.from_pretrained(path)
    assert time.perf_counter() - t0 < 5


def test_integer_tensors_are_not_weights(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    import yolos
    from yolos.errors import CheckpointError

    path = tmp_path / "m.safetensors"
    yolos.from_pretrained(MODEL).save(path)
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    save_file({k: v.to(torch.int32) for k, v in load_file(path).items()}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="not floating point"):
        yolos.from_pretrained(path)


def test_a_sharded_index_names_files_beside_it_only(tmp_path):
    import yolos
    from yolos.errors import CheckpointError

    folder = tmp_path / "hf"
    yolos.from_pretrained(MODEL).save_pretrained(folder)
    (folder / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"vit.layernorm.weight": "../elsewhere.safetensors"}}))
    with pytest.raises(CheckpointError, match="not a file name"):
        yolos.from_pretrained(folder)


def test_an_original_pth_missing_its_last_block(tmp_path):
    from yolos import create_model
    from yolos.checkpoint.original import ours_to_original
    from yolos.errors import CheckpointError

    state = ours_to_original(create_model("micro", mid_pos_embed=True).state_dict())
    state = {k: v for k, v in state.items() if not k.startswith("backbone.blocks.3.")}
    torch.save({"model": state}, tmp_path / "cut.pth")
    import yolos

    with pytest.raises(CheckpointError, match="last 1 block"):
        yolos.from_pretrained(tmp_path / "cut.pth")


def test_one_claimant_takes_a_stale_lock(tmp_path):
    import multiprocessing as mp

    from yolos.run_dir import LOCK_NAME

    for trial in range(5):
        folder = tmp_path / f"run{trial}"
        folder.mkdir()
        (folder / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname()}))  # gone
        ctx = mp.get_context("fork")
        queue, barrier = ctx.Queue(), ctx.Barrier(4)
        procs = [ctx.Process(target=_claim, args=(folder, queue, barrier)) for _ in range(4)]
        for p in procs:
            p.start()
        wins = sum(queue.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(30)
        assert wins == 1, trial


def _claim(folder, queue, barrier):
    from yolos.run_dir import RunLock

    barrier.wait()
    lock = RunLock(folder)
    got = lock.acquire()
    queue.put(got)
    time.sleep(0.3)
    lock.release()


# ------------------------------------------------------------------------ bounds and hangs
def test_list_from_a_device_and_empty_sources(tmp_path, capsys):
    t0 = time.perf_counter()
    code, err = cli(["predict", "--list", "/dev/zero", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "not a regular file" in one_error_line(err, "predict") and time.perf_counter() - t0 < 10
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    code, err = cli(["predict", "--list", tmp_path / "empty.txt", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "lists no image paths" in one_error_line(err, "predict")
    code, err = cli(["predict", "", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "empty path" in one_error_line(err, "predict")
    assert not (tmp_path / "o").exists()


def test_a_fifo_is_not_a_missing_file(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.jpg")
    code, err = cli(["predict", tmp_path / "pipe.jpg", "--out", tmp_path / "o", "--model", MODEL], capsys)
    assert code == 1 and "not a regular file" in err


def test_symlink_loops_do_not_hang(photos, tmp_path, capsys):
    os.symlink("..", photos / "up")
    (photos / "sub").mkdir()
    os.symlink("../sub", photos / "sub" / "again")
    t0 = time.perf_counter()
    for source in (str(photos), str(photos / "**" / "*.jpg")):
        code, _ = cli(["predict", source, "--out", tmp_path / f"o{int(time.time() * 1e6)}", "--model", MODEL,
                       "--no-images"], capsys)
        assert code == 0
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("spec, words", [
    ("{num_images: 4, image_size: 100000}", "image_size"), ("{num_images: 100000000000}", "num_images"),
    ("{num_images: 4, max_objects: 1000000}", "max_objects"),
])
def test_synthetic_sizes_are_bounded(tmp_path, spec, words, capsys):
    write_synthetic_dataset(tmp_path / "val", num_images=2, image_size=64, seed=1)
    (tmp_path / "d.yaml").write_text(f"train:\n  synthetic: {spec}\nval: {{images: val/images, "
                                     f"annotations: val/annotations.json}}\n")
    code, err = cli(["train", "--data", tmp_path / "d.yaml", "--out", tmp_path / "r", *TRAIN], capsys)
    assert code == 2 and words in one_error_line(err, "train")


def test_unknown_devices_and_a_bad_environment(tmp_path, capsys):
    code, err = cli(["predict", "--device", "xpu", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "xpu" in one_error_line(err, "predict")
    env = dict(os.environ, YOLOS_MAX_PIXELS="abc")
    r = subprocess.run([sys.executable, "-m", "yolos.cli", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "predict" in r.stdout
    r = subprocess.run([sys.executable, "-m", "yolos.cli", "predict", "--out", str(tmp_path / "o2")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "YOLOS_MAX_PIXELS" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------ signals and leftovers
def test_sigterm_saves_the_state_like_ctrl_c(shapes, tmp_path):
    run = tmp_path / "run"
    code = "import sys, torch; torch.set_num_threads(1); from yolos.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "train", "--data", str(shapes), "--out", str(run), *TRAIN,
                             "--epochs", "400", "--log-every-steps", "1"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "log.jsonl").exists() and
                                          len((run / "log.jsonl").read_text().splitlines()) > 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "--resume" in err, err
    assert torch.load(run / "state.pt", weights_only=True)["global_step"] > 0


def test_a_killed_save_leaves_no_temporary_file_behind(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "1"], capsys)[0] == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / f".state.pt.tmp{dead.pid}").write_bytes(b"half a state")
    assert cli(["train", "--data", shapes, "--out", run, *TRAIN, "--epochs", "2", "--resume"], capsys)[0] == 0
    assert not list(run.glob(".*.tmp*"))


def test_main_cli_without_a_model_checks_the_model_name_first(tmp_path, capsys):
    code, err = cli(["predict", "--model", "typo", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "'typo'" in one_error_line(err, "predict")
    assert main is not None
