"""The training studies' scripts still run (they are not imported by the library, so nothing
else would notice them break): each with a budget of seconds, writing its curves."""
import json

import pytest
import torch

from benchmarks import convergence_study, train_synthetic


def test_the_convergence_study_runs_its_levers(tmp_path, one_thread):
    out = tmp_path / "study.jsonl"
    runs = ["scratch recipe", "scratch, anchor matching 50, IoU-aware class loss"]
    assert convergence_study.main(["--runs", *runs, "--budget-seconds", "2", "--val-images", "4",
                                   "--out", str(out)]) == 0
    rows = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["name"] for r in rows] == runs and all(r["steps"] > 0 and r["curve"] for r in rows)
    assert rows[1]["run"]["class_loss"] == "iou"


def test_the_convergence_study_counts_steps_with_the_extra_tokens(tmp_path, one_thread):
    out = tmp_path / "study.jsonl"
    runs = ["scratch, anchor matching 50, 3 groups, denoising 2"]
    assert convergence_study.main(["--runs", *runs, "--budget-steps", "4", "--eval-every", "2",
                                   "--val-images", "4", "--out", str(out)]) == 0
    (row,) = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert row["steps"] == row["budget_steps"] == 4 and [p[1] for p in row["curve"]] == [2, 4]
    assert row["run"]["det_groups"] == 3 and row["run"]["denoising"] == 2 and row["seed"] == 0
    png = tmp_path / "curves.png"
    assert convergence_study.main(["--table", str(out), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_convergence_study_trains_in_fp32_on_request(tmp_path, one_thread, capsys):
    """--precision fp32 (for CPUs without bf16 units) trains without autocast: the same seed's
    loss differs from the bf16 run's, and the row and its table line say so."""
    out = tmp_path / "study.jsonl"
    for precision in ("bf16", "fp32"):
        assert convergence_study.main(["--runs", "scratch recipe", "--budget-steps", "2", "--val-images", "4",
                                       "--precision", precision, "--out", str(out)]) == 0
    bf16, fp32 = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert (bf16["precision"], fp32["precision"]) == ("bf16", "fp32")
    assert bf16["final_loss"] != fp32["final_loss"]
    capsys.readouterr()
    assert convergence_study.main(["--table", str(out)]) == 0
    names = [ln.strip("|").split("|")[0].strip() for ln in capsys.readouterr().out.strip().splitlines()[2:]]
    assert names == ["scratch recipe, seed 0", "scratch recipe, fp32, seed 0"]


def test_the_scratch_against_transformers_study_runs(tmp_path, one_thread):
    out = tmp_path / "curves.json"
    assert train_synthetic.main(["--budget-minutes", "0.04", "--val-images", "4", "--batch-size", "4",
                                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())


def test_the_study_table_interpolates_the_steps_to_each_target(tmp_path, capsys):
    """Curves made by hand: AP50 0.4 at 100 steps (10 s) and 0.8 at 200 steps (30 s), so 0.5 is
    reached a quarter of the way between them (15 s, 125 steps); 0.9 never."""
    row = {"name": "hand", "seed": 3, "curve": [[10.0, 100, 0.2, 0.4], [30.0, 200, 0.5, 0.8]], "steps": 200,
           "budget_steps": 200, "seconds": 30.0, "final_loss": 1.0}
    out = tmp_path / "runs.jsonl"
    out.write_text(json.dumps(row) + "\n")
    assert convergence_study.main(["--table", str(out), "--targets", "0.5", "0.9"]) == 0
    header, _, line = capsys.readouterr().out.strip().splitlines()
    assert "to AP50 0.5" in header and "to AP50 0.9" in header
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:5] == ["hand, seed 3", "15 s / 125 steps", "never", "0.5000", "0.8000"]


def test_the_study_table_reads_several_files_in_order(tmp_path, capsys):
    paths = []
    for name, ap50 in (("first", 0.4), ("second", 0.8)):
        row = {"name": name, "seed": 0, "curve": [[10.0, 100, 0.2, ap50]], "steps": 100, "budget_steps": 100,
               "seconds": 10.0, "final_loss": 1.0}
        paths.append(tmp_path / f"{name}.jsonl")
        paths[-1].write_text(json.dumps(row) + "\n")
    assert convergence_study.main(["--table", *map(str, paths), "--targets", "0.5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[2:]
    assert [ln.strip("|").split("|")[0].strip() for ln in lines] == ["first, seed 0", "second, seed 0"]
    # the second reaches 0.5 at 0.5 / 0.8 of its first evaluation (from 0 at step 0): 6.25 s, 62.5 steps
    assert "never" in lines[0] and "6 s / 62 steps" in lines[1]


def test_the_convergence_study_stops_a_run_at_a_target(tmp_path, one_thread, capsys):
    """--stop-at ends a run at its first evaluation at or above the AP50 (0: the first one), with
    the schedule of the whole budget; the row says it stopped. The dense head's row runs."""
    out = tmp_path / "study.jsonl"
    runs = ["scratch, anchor matching 50, denoising 2, lr 2e-3, dense aux 1"]
    assert convergence_study.main(["--runs", *runs, "--budget-steps", "6", "--eval-every", "2", "--stop-at", "0",
                                   "--val-images", "4", "--precision", "fp32", "--out", str(out)]) == 0
    (row,) = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert row["steps"] == 2 and row["budget_steps"] == 6 and row["note"] == "stopped at AP50 >= 0"
    assert row["run"]["dense_aux"] == 1.0 and row["final_loss"] is None
    capsys.readouterr()
    assert convergence_study.main(["--table", str(out)]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if "dense aux 1" in ln][0]
    assert [c.strip() for c in line.split("|")][-4:-1] == ["-", "2", f"6 steps ({row['seconds']:.0f} s)"]


def test_the_convergence_study_times_a_step_of_each_run(one_thread, capsys):
    runs = ["scratch, anchor matching 50, denoising 2, lr 2e-3",
            "scratch, anchor matching 50, denoising 2, lr 2e-3, dense aux 1"]
    assert convergence_study.main(["--runs", *runs, "--step-cost", "1", "--precision", "fp32"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| scratch")]
    assert len(rows) == 2 and rows[0].rstrip(" |").endswith("1.00x")
    assert all(float(r.split("|")[2]) > 0 for r in rows)


def test_the_finetune_task_trains_on_fresh_renders_or_a_fixed_set_of_files(tmp_path):
    from benchmarks.finetune import write_task
    from yolos.data.dataset_config import resolve_dataset

    fresh = resolve_dataset(write_task(tmp_path / "fresh", val_images=3, batch=2, epoch_steps=2))
    assert fresh.train_synthetic["num_images"] == 4 and fresh.train is None
    files = resolve_dataset(write_task(tmp_path / "files", val_images=3, batch=2, epoch_steps=2, train_images=5))
    assert files.train_synthetic is None
    train = files.dataset("train")
    assert len(train) == 5 and len(list((tmp_path / "files" / "train" / "images").glob("*.jpg"))) == 5
    assert [c["name"] for c in train.categories] == ["star", "cross", "ring"]
    assert len(files.dataset("val")) == 3


def test_each_finetune_contender_is_a_valid_run_with_its_levers(tmp_path):
    from benchmarks.finetune import CONTENDERS, config

    configs = {name: config(name, tmp_path / "data.yaml", tmp_path / name, "model.safetensors", 1, 16, 2e-3)
               for name in CONTENDERS}
    assert (configs["finetune-class-weight-eos1"].eos_coef, configs["finetune-class-weight-eos1"].class_loss_weight) \
        == (1.0, 2.0)
    assert {c.eos_coef for name, c in configs.items() if name != "finetune-class-weight-eos1"} == {0.1}
    assert configs["scratch"].init is None and configs["finetune"].init == "model.safetensors"
    assert configs["finetune-class-weight-no-anchors"].anchor_matching == 0.0
    assert configs["finetune-class-weight"].anchor_matching is None  # the recipe's: the checkpoint's
    assert {name for name, c in configs.items() if c.augment} == {"finetune-class-weight-augment"}
    assert {name for name, c in configs.items() if c.clip_max_norm != 0.1} == {"finetune-class-weight-no-clip"}
    assert configs["finetune-class-weight-no-clip"].clip_max_norm == 0.0
    assert not configs["finetune"].cache
    assert config("finetune", tmp_path / "data.yaml", tmp_path / "c", "m", 1, 16, cache=True).cache


def test_the_train_step_benchmark_times_each_count_of_det_tokens(one_thread, capsys):
    from benchmarks import train_step

    train_step.main(["--det-tokens", "12", "4", "--cases", "micro", "--repeats", "1", "--threads", "1"])
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| micro")]
    assert [r.split("|")[2].strip() for r in rows] == ["12", "4"] and rows[0].rstrip(" |").endswith("1.00x")
    assert all(float(r.split("|")[3]) > 0 for r in rows)


def test_the_train_step_benchmark_times_each_count_of_frozen_blocks(one_thread, capsys, monkeypatch):
    from benchmarks import train_step

    frozen, real = [], train_step.with_frozen_blocks

    def counted(variant, n):
        model = real(variant, n)
        frozen.append(sum(not p.requires_grad for p in model.parameters()))
        return model

    monkeypatch.setattr(train_step, "with_frozen_blocks", counted)
    train_step.main(["--freeze", "0", "2", "--cases", "micro", "--repeats", "1", "--threads", "1"])
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| micro")]
    assert [r.split("|")[2].strip() for r in rows] == ["0", "2"] and rows[0].rstrip(" |").endswith("1.00x")
    # nothing frozen, then [CLS], [DET], the position table, the patch weight and bias, and 12 a block
    assert frozen == [0, 5 + 2 * 12]


def test_the_train_step_benchmark_times_eager_attention_and_puts_sdpa_back(one_thread, capsys, monkeypatch):
    import yolos.model.vit as vit
    from benchmarks import train_step
    from yolos import create_model
    from yolos.model import kernels

    calls, real = [], kernels._eager

    def counted(q, k, v):
        calls.append(q.requires_grad)
        return real(q, k, v)

    monkeypatch.setattr(kernels, "_eager", counted)
    train_step.main(["--eager-attention", "--cases", "micro", "--repeats", "1", "--threads", "1"])
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| micro"))
    sdpa, eager, ratio = (float(c.strip().rstrip("x")) for c in row.split("|")[2:5])
    assert sdpa > 0 and eager > 0 and ratio == pytest.approx(eager / sdpa, abs=0.05)  # of the unrounded times
    blocks = create_model("micro").config.depth  # one eager call a block in each of the 2 eager steps
    assert len(calls) == 2 * blocks and all(calls)  # with gradients
    assert vit.attend is kernels.attention


def test_eager_attention_trains_as_sdpa_does():
    """The two paths the benchmark times compute the same gradients (fp32, to rounding)."""
    from yolos.model import kernels

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 37, 16, generator=g, requires_grad=True) for _ in range(3))
    grads = []
    for attend in (lambda: kernels.attention(q, k, v), lambda: kernels._eager(q, k, v)):
        out = attend()
        grads.append(torch.autograd.grad((out * out.detach().sin()).sum(), (q, k, v)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
