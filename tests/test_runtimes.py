"""--runtime: the exported graph behind predict, val and serve (onnxruntime, OpenVINO where
installed), its cache, auto's choice, and a runtime that is not installed."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

import yolos
from yolos.cli import main
from yolos.data.synthetic import write_synthetic_dataset
from yolos.defaults import DEFAULT_IMAGE
from yolos.export import engines
from yolos.export.engines import ExportedNetwork, compile_for, engine_file

pytestmark = pytest.mark.usefixtures("one_thread")
ORT = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Each test its own cache: exports and auto's decisions start from nothing."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@ORT
def test_onnxruntime_equals_torch_in_logits_and_detections(tmp_path):
    model = yolos.from_pretrained("bundled")
    network = compile_for(model, "onnxruntime")
    assert isinstance(network, ExportedNetwork) and network.config is model.config
    for size in ((128, 128), (96, 160), (176, 112)):  # one any-size file for every size
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            ours, theirs = model(x), network(x)
        assert (ours["logits"] - theirs["logits"]).abs().max() < 1e-4
        assert (ours["pred_boxes"] - theirs["pred_boxes"]).abs().max() < 1e-4
    a = model.predict(DEFAULT_IMAGE, threshold=0.1)[0]
    b = network.predict(DEFAULT_IMAGE, threshold=0.1)[0]
    assert a.label_names == b.label_names and torch.allclose(a.boxes, b.boxes, atol=0.05)
    assert b.category_ids.tolist() == a.category_ids.tolist()
    with pytest.raises(ValueError, match="precision is chosen when it is made"):
        network.predict(DEFAULT_IMAGE, dtype="bf16")


@ORT
def test_predict_val_and_serve_through_onnxruntime(tmp_path, capsys):
    data = write_synthetic_dataset(tmp_path / "ds", 8, 128, 1, 4, seed=2000).parent
    for runtime in ("torch", "onnxruntime"):
        assert main(["predict", str(DEFAULT_IMAGE), "--runtime", runtime, "--out", str(tmp_path / f"p-{runtime}"),
                     "--threshold", "0.2"]) == 0
        assert main(["val", "--data", str(data), "--val-fraction", "0", "--runtime", runtime, "--no-progress",
                     "--out", str(tmp_path / f"v-{runtime}")]) == 0
    capsys.readouterr()
    a, b = (json.loads((tmp_path / f"p-{r}" / "predictions.json").read_text())["images"][0]["detections"]
            for r in ("torch", "onnxruntime"))
    assert [d["label"] for d in a] == [d["label"] for d in b] and len(a) > 0
    assert all(abs(x["score"] - y["score"]) < 1e-4 for x, y in zip(a, b))
    s, t = (json.loads((tmp_path / f"v-{r}" / "stats.json").read_text()) for r in ("torch", "onnxruntime"))
    assert s["AP"] > 0.5 and abs(s["AP"] - t["AP"]) < 1e-4 and abs(s["AP50"] - t["AP50"]) < 1e-4

    from fastapi.testclient import TestClient

    from yolos.serve import ServeSettings, create_app

    answers = {}
    for runtime in ("torch", "onnxruntime"):
        with TestClient(create_app(ServeSettings(runtime=runtime))) as client:
            for _ in range(200):
                if client.get("/readyz").status_code == 200:
                    break
                import time

                time.sleep(0.05)
            assert client.get("/info").json()["runtime"] == runtime
            answers[runtime] = client.post("/predict", content=DEFAULT_IMAGE.read_bytes(),
                                           headers={"content-type": "image/jpeg"}).json()
    assert [d["label"] for d in answers["torch"]] == [d["label"] for d in answers["onnxruntime"]]
    assert all(abs(x["score"] - y["score"]) < 1e-4 for x, y in zip(answers["torch"], answers["onnxruntime"]))


@ORT
def test_the_export_is_cached_and_follows_the_weights(tmp_path, monkeypatch):
    calls = []
    real = engines.export_model
    monkeypatch.setattr(engines, "export_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = yolos.create_model("micro")
    first = engine_file(model, "fp32")
    assert engine_file(model, "fp32") == first and len(calls) == 1  # reused
    compile_for(model, "onnxruntime")
    assert len(calls) == 1
    with torch.no_grad():
        model.det_tokens.add_(0.5)  # other weights: another file
    second = engine_file(model, "fp32")
    assert second != first and len(calls) == 2 and first.is_file() and second.is_file()
    assert str(tmp_path / "cache") in str(first)


@ORT
def test_auto_chooses_by_fidelity_and_speed_and_says_why(tmp_path, monkeypatch):
    from yolos.export import auto

    monkeypatch.setattr(auto, "candidates", lambda: [("torch", None), ("onnxruntime", None)])
    model = yolos.from_pretrained("bundled")
    said = []
    network = compile_for(model, "auto", say=said.append)
    line = said[-1]
    assert line.startswith("runtime auto: ") and "measured now" in line and "ms per image" in line
    chosen = line.split("runtime auto: ")[1].split(",")[0]
    assert chosen in ("torch fp32", "onnxruntime fp32")
    assert (network is model) == (chosen == "torch fp32")
    decisions = json.loads((tmp_path / "cache" / "yolos" / "auto.json").read_text())
    (decision,) = decisions.values()
    assert set(decision["results"]) == {"torch fp32", "onnxruntime fp32"} and decision["choice"] == chosen
    said.clear()
    compile_for(model, "auto", say=said.append)
    assert "measured before" in said[-1] and not any("measuring" in s for s in said)

    # a candidate whose detections differ is never chosen, however fast
    real_runner = auto._runner

    def broken_ort(model_, network, dtype):
        run = real_runner(model_, network, dtype)
        if network is model_:
            return run
        return lambda x: {k: (v.flip(-1) if k == "logits" else v) for k, v in run(x).items()}

    monkeypatch.setattr(auto, "_runner", broken_ort)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    said.clear()
    assert compile_for(model, "auto", say=said.append) is model
    assert "onnxruntime fp32: detections differ" in said[-1]
    with pytest.raises(ValueError, match="auto chooses the dtype"):
        compile_for(model, "auto", "bf16")


def test_a_runtime_that_is_not_installed(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(engines.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnxruntime", "openvino") else real(name, *a))
    with pytest.raises(engines.RuntimeUnavailable, match=r"pip install 'yolos\[export\]'"):
        compile_for(yolos.create_model("micro"), "onnxruntime")
    for command in (["predict", str(DEFAULT_IMAGE), "--out", str(tmp_path / "p")], ["serve", "--port", "1"],
                    ["val", "--data", str(tmp_path)]):
        assert main([*command, "--runtime", "openvino"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "pip install 'yolos[openvino]'" in err[0], err
    assert not (tmp_path / "p").exists()  # refused before any folder was claimed


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_openvino_equals_torch_where_installed(tmp_path, capsys):
    model = yolos.from_pretrained("bundled")
    network = compile_for(model, "openvino")
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        assert (model(x)["logits"] - network(x)["logits"]).abs().max() < 1e-3  # f32 asked for, not its bf16
    a, b = (m.predict(DEFAULT_IMAGE, threshold=0.1)[0] for m in (model, network))
    assert a.label_names == b.label_names and torch.allclose(a.boxes, b.boxes, atol=0.5)
    data = write_synthetic_dataset(tmp_path / "ds", 8, 128, 1, 4, seed=2000).parent
    stats = {}
    for runtime in ("torch", "openvino"):
        assert main(["val", "--data", str(data), "--val-fraction", "0", "--runtime", runtime, "--no-progress",
                     "--out", str(tmp_path / runtime)]) == 0
        stats[runtime] = json.loads((tmp_path / runtime / "stats.json").read_text())
    assert abs(stats["torch"]["AP"] - stats["openvino"]["AP"]) < 1e-3
    from fastapi.testclient import TestClient

    from yolos.serve import ServeSettings, create_app

    with TestClient(create_app(ServeSettings(runtime="openvino"))) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
            import time

            time.sleep(0.05)
        answer = client.post("/predict", content=DEFAULT_IMAGE.read_bytes(), headers={"content-type": "image/jpeg"})
    assert [d["label"] for d in answer.json()] == [d["label"] for d in model.predict(DEFAULT_IMAGE)[0].to_dict()]


def test_bf16_attention_paths_agree_and_the_choice_is_measured_once(monkeypatch, tmp_path):
    from yolos.inference.precision import precision_for
    from yolos.model import kernels

    q, k, v = (torch.randn(1, 2, 50, 16).bfloat16() for _ in range(3))
    with torch.no_grad():
        monkeypatch.setattr(kernels, "EAGER_BF16_ATTENTION", True)
        eager = kernels.attention(q, k, v).float()
        monkeypatch.setattr(kernels, "EAGER_BF16_ATTENTION", False)
        fused = kernels.attention(q, k, v).float()
    reference = torch.softmax(q.float() @ k.float().transpose(-2, -1) / 4, -1) @ v.float()
    for out in (eager, fused):
        assert (out - reference).abs().max() < 0.05  # bf16 rounding
    monkeypatch.setattr(kernels, "EAGER_BF16_ATTENTION", None)
    monkeypatch.setattr(kernels, "_EAGER_MEASURED", None)
    model = yolos.from_pretrained("bundled")
    precision_for(model, "bf16")  # times one model pass with each path, once
    verdict = kernels._EAGER_MEASURED
    files = list((tmp_path / "cache" / "yolos").glob("bf16-attention-*.txt"))
    assert verdict in (True, False) and len(files) == 1
    assert files[0].read_text().strip() == ("eager" if verdict else "sdpa")
    monkeypatch.setattr(kernels, "_EAGER_MEASURED", None)
    files[0].write_text("eager\n")  # another process reads the kept verdict instead of measuring
    precision_for(model, "bf16")
    assert kernels._EAGER_MEASURED is True


@pytest.mark.skipif(importlib.util.find_spec("nncf") is None or importlib.util.find_spec("openvino") is None,
                    reason="openvino and nncf are not installed")
def test_openvino_int8_is_calibrated_on_given_images(tmp_path):
    calibration = write_synthetic_dataset(tmp_path / "calib", 8, 128, 1, 6, seed=77, look="varied").parent
    model = yolos.from_pretrained("bundled")
    with pytest.raises(ValueError, match="--calibration"):
        compile_for(model, "openvino", "int8")
    files = sorted((calibration / "images").iterdir())
    network = compile_for(model, "openvino", "int8", calibration=files)
    assert network.precision == "int8" and network.path.name == "model.xml"
    assert compile_for(model, "openvino", "int8", calibration=files).path == network.path  # cached
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert (model(x)["pred_boxes"] - network(x)["pred_boxes"]).abs().max() < 0.05  # int8, not garbage
