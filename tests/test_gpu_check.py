"""benchmarks/gpu_check.py runs end to end in its CPU dry run (the code a lent GPU will run), and
every part reports; a failing part is reported without stopping the others."""
import json

from benchmarks import gpu_check


def test_dry_run_writes_both_reports(tmp_path):
    code = gpu_check.main(["--dry-run", "--parts", "parity", "speed", "train", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0, report
    assert [report["parts"][p]["status"] for p in ("parity", "speed", "train")] == ["pass"] * 3
    assert report["parts"]["parity"]["result"]["micro"]["fp32_max_diff"] <= 1e-4
    speed = report["parts"]["speed"]["result"]["micro"]["modes"]
    assert {"ours fp32", "ours bf16", "hf eager fp32", "hf sdpa bf16"} <= speed.keys()
    assert speed["ours fp32"]["b1_ms"] > 0
    assert "| ours fp32 |" in (tmp_path / "gpu_check.md").read_text()


def test_dry_run_times_the_scratch_recipe_with_each_accelerator(tmp_path):
    code = gpu_check.main(["--dry-run", "--parts", "accelerators", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0, report
    steps = report["parts"]["accelerators"]["result"]["steps"]
    assert list(steps) == list(gpu_check.ACCELERATOR_RUNS) and steps["recipe (dense head)"]["ratio"] == 1.0
    assert all(row["s_per_step"] > 0 for row in steps.values())
    assert "| + 3 groups |" in (tmp_path / "gpu_check.md").read_text()


def test_a_failing_part_does_not_stop_the_rest(tmp_path, monkeypatch):
    def broken(settings):
        raise RuntimeError("boom")

    monkeypatch.setitem(gpu_check.PARTS, "parity", broken)
    code = gpu_check.main(["--dry-run", "--parts", "parity", "train", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 1
    assert report["parts"]["parity"]["status"] == "fail" and "boom" in report["parts"]["parity"]["error"]
    assert report["parts"]["train"]["status"] == "pass"
    assert "## parity: fail" in (tmp_path / "gpu_check.md").read_text()
