"""Export: ONNX (run in onnxruntime) and TorchScript match the PyTorch model, at any input size by
default and at one baked size with --size; fp16 and int8 ONNX within measured bounds; no Resize op
in any graph; dynamic batch; bad sizes and existing files are refused with a clear message."""
import numpy as np
import pytest
import torch

from yolos import YolosError, create_model
from yolos.cli import main as cli_main
from yolos.export import export_model

SIZE = (96, 128)  # not the micro's 128x128 training grid: the embeddings must be resampled


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    model = create_model("micro").eval()
    with torch.no_grad():  # realistic, non-trivial embeddings so a wrong resample would show
        model.pos_embed.normal_(0, 0.5)
    return model


def test_onnx_matches_pytorch_dynamic_batch_and_has_no_resize(micro, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = export_model(micro, tmp_path / "m.onnx", format="onnx", size=SIZE)
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    assert "Resize" not in ops and "Upsample" not in ops, ops  # embeddings are constants
    assert [i.name for i in graph.input] == ["pixel_values"]
    assert [o.name for o in graph.output] == ["logits", "pred_boxes"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, *SIZE)
        with torch.no_grad():
            ref = micro(x)
        logits, boxes = session.run(None, {"pixel_values": x.numpy()})
        assert logits.shape == tuple(ref["logits"].shape)
        np.testing.assert_allclose(logits, ref["logits"].numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(boxes, ref["pred_boxes"].numpy(), rtol=0, atol=1e-4)


ANY_SIZES = [(96, 128), (128, 128), (64, 224), (160, 48), (16, 16), (208, 144)]


def _random_size(seed: int) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    return tuple(int(v) * 16 for v in rng.integers(1, 17, size=2))


def test_any_size_onnx_equals_pytorch_at_every_size(micro, tmp_path):
    """One file, many sizes: the graph resamples the embeddings itself, with PyTorch's bicubic
    written as matrices, so each size matches the model (not only the size it was traced at)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = export_model(micro, tmp_path / "any.onnx")  # no size: any size
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Resize" not in ops and "Upsample" not in ops, ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in ANY_SIZES + [_random_size(seed) for seed in range(3)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            ref = micro(x)
        logits, boxes = session.run(None, {"pixel_values": x.numpy()})
        np.testing.assert_allclose(logits, ref["logits"].numpy(), rtol=0, atol=1e-4, err_msg=str(size))
        np.testing.assert_allclose(boxes, ref["pred_boxes"].numpy(), rtol=0, atol=1e-4, err_msg=str(size))


def test_any_size_torchscript_equals_pytorch_at_every_size(micro, tmp_path):
    loaded = torch.jit.load(str(export_model(micro, tmp_path / "any.pt", format="torchscript")))
    for size in ANY_SIZES[:3] + [_random_size(7)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            logits, boxes = loaded(x)
            ref = micro(x)
        torch.testing.assert_close(logits, ref["logits"], rtol=0, atol=1e-4, msg=str(size))
        torch.testing.assert_close(boxes, ref["pred_boxes"], rtol=0, atol=1e-4, msg=str(size))


@pytest.mark.parametrize("dtype, logit_tol, box_tol", [("fp16", 0.05, 0.01), ("int8", 0.5, 0.1)])
def test_reduced_precision_onnx_stays_close(micro, tmp_path, dtype, logit_tol, box_tol):
    """fp16 and int8 files run at any size and stay near fp32 (bounds well above the measured
    error of this random model, which docs/benchmarks.md reports with trained ones)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    if dtype == "fp16":
        pytest.importorskip("onnxconverter_common")
    path = export_model(micro, tmp_path / f"m-{dtype}.onnx", dtype=dtype)
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 in and out
    weights = {t.data_type for t in graph.initializer}
    assert (onnx.TensorProto.FLOAT16 if dtype == "fp16" else onnx.TensorProto.INT8) in weights
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in [(96, 128), _random_size(11)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            ref = micro(x)
        logits, boxes = session.run(None, {"pixel_values": x.numpy()})
        assert logits.dtype == np.float32
        assert np.abs(logits - ref["logits"].numpy()).max() < logit_tol
        assert np.abs(boxes - ref["pred_boxes"].numpy()).max() < box_tol


def test_export_never_writes_over_a_file(micro, tmp_path, capsys):
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"precious")
    with pytest.raises(YolosError, match="exists"):
        export_model(micro, checkpoint, format="torchscript")
    code = cli_main(["export", "--model", "micro", "--random-weights", "--format", "torchscript",
                     "--out", str(checkpoint)])
    assert code == 2 and "exists" in capsys.readouterr().err
    assert checkpoint.read_bytes() == b"precious"
    # a folder: the default name is written inside it, once
    assert cli_main(["export", "--model", "micro", "--random-weights", "--format", "torchscript",
                     "--out", str(tmp_path)]) == 0
    written = tmp_path / "micro-random.pt"
    assert written.is_file()
    assert cli_main(["export", "--model", "micro", "--random-weights", "--format", "torchscript",
                     "--out", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err


def test_torchscript_loads_and_matches(micro, tmp_path):
    path = export_model(micro, tmp_path / "m.pt", format="torchscript", size=SIZE)
    loaded = torch.jit.load(str(path))
    x = torch.randn(3, 3, *SIZE)  # traced with batch 2: batch must stay dynamic
    with torch.no_grad():
        logits, boxes = loaded(x)
        ref = micro(x)
    torch.testing.assert_close(logits, ref["logits"], rtol=0, atol=1e-4)
    torch.testing.assert_close(boxes, ref["pred_boxes"], rtol=0, atol=1e-4)


def test_mid_position_embeddings_are_baked_too(tmp_path):
    # a micro-sized model with mid embeddings (as yolos-s has) exercises the second constant
    torch.manual_seed(0)
    model = create_model("micro", mid_pos_embed=True).eval()
    with torch.no_grad():
        model.mid_pos_embed.normal_(0, 0.5)
    path = export_model(model, tmp_path / "mid.pt", format="torchscript", size=(112, 80))
    x = torch.randn(1, 3, 112, 80)
    with torch.no_grad():
        logits, _ = torch.jit.load(str(path))(x)
        torch.testing.assert_close(logits, model(x)["logits"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("size", [(100, 128), (96, 130)])
def test_size_not_multiple_of_patch_is_refused(micro, tmp_path, size):
    with pytest.raises(YolosError, match=rf"{size[0]}x{size[1]}.*multiple of the patch size 16"):
        export_model(micro, tmp_path / "bad.onnx", size=size)
    assert not (tmp_path / "bad.onnx").exists()


def test_unknown_format_is_refused(micro, tmp_path):
    with pytest.raises(YolosError, match="tflite"):
        export_model(micro, tmp_path / "m.tflite", format="tflite", size=SIZE)


def test_cli_export_torchscript(tmp_path, capsys):
    out = tmp_path / "cli.pt"
    code = cli_main(["export", "--model", "micro", "--random-weights", "--format", "torchscript", "--size", "64", "96",
                     "--out", str(out)])
    assert code == 0 and out.exists()
    assert str(out) in capsys.readouterr().out
    logits, boxes = torch.jit.load(str(out))(torch.randn(2, 3, 64, 96))
    assert logits.shape[:2] == (2, 10) and boxes.shape == (2, 10, 4)


def test_cli_export_bad_size_is_one_line_error(tmp_path, capsys):
    code = cli_main(["export", "--model", "micro", "--random-weights", "--format", "onnx", "--size", "65", "96",
                     "--out", str(tmp_path / "x.onnx")])
    assert code == 2
    assert "multiple of the patch size" in capsys.readouterr().err


# ------------------------------------------------------------------ speed paths and yolos benchmark
def test_fast_cpu_paths_match_plain_pytorch_forward_and_backward():
    """The oneDNN linears and the [DET]-only last block (used by export's reference model and by
    the benchmarks) give the plain F.linear / full-sequence results, gradients included."""
    from yolos.model import kernels

    torch.manual_seed(0)
    model = create_model("micro", mid_pos_embed=True).train()
    x = torch.randn(2, 3, 96, 112)

    def run(fast: bool):
        kernels.ONEDNN_LINEAR = fast
        try:
            model.zero_grad(set_to_none=True)
            out = model(x)
            (out["logits"].square().mean() + out["pred_boxes"].sum()).backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            return out, grads
        finally:
            kernels.ONEDNN_LINEAR = None

    fast, fast_grads = run(True)
    plain, plain_grads = run(False)
    torch.testing.assert_close(fast["logits"], plain["logits"], rtol=0, atol=1e-5)
    assert fast_grads.keys() == plain_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    model.eval()
    with torch.no_grad():  # full-sequence last block (taken when attention maps are requested)
        full = model(x, output_attentions=True)["logits"]
        torch.testing.assert_close(model(x)["logits"], full, rtol=0, atol=1e-5)


def test_cli_benchmark_on_real_images(coco_val80, capsys):
    code = cli_main(["benchmark", "--model", "micro", "--random-weights", "--data", str(coco_val80), "--images", "3",
                     "--warmup", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "first 3 images" in out and "model only" in out and "end to end" in out
    fps = [float(line.split(":")[1].split()[0]) for line in out.splitlines()
           if line.strip().startswith(("model only", "end to end"))]
    assert len(fps) == 2 and fps[0] > fps[1] > 0  # end to end includes the model


def test_cli_benchmark_random_input_and_bad_folder(tmp_path, capsys):
    assert cli_main(["benchmark", "--model", "micro", "--random-weights", "--images", "2", "--size", "64", "64"]) == 0
    assert "random input 64x64" in capsys.readouterr().out
    assert cli_main(["benchmark", "--data", str(tmp_path)]) == 2  # the bundled model
    assert str(tmp_path) in capsys.readouterr().err
    # a variant name without --random-weights means its released weights, which micro has none of
    assert cli_main(["benchmark", "--model", "micro", "--images", "1"]) == 2
    assert "released" in capsys.readouterr().err


def test_cli_benchmark_compares_runtimes(coco_val80, capsys):
    """--runtime: every runtime on the same inputs, one table row each; a runtime whose package
    is missing gets a row saying so instead of failing the run."""
    from yolos.export.runtimes import available

    code = cli_main(["benchmark", "--runtime", "torch-fp32", "torch-int8", "onnxruntime-fp32", "openvino-fp32",
                     "--data", str(coco_val80), "--images", "2", "--repeats", "1", "--short-side", "128",
                     "--long-side", "160"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"torch-fp32", "torch-int8", "onnxruntime-fp32", "openvino-fp32"} <= rows.keys()
    if available("onnxruntime-fp32") is None:
        cells = [c.strip() for c in rows["onnxruntime-fp32"].split("|")]
        assert float(cells[6]) < 1e-3 and cells[8] == "2/2"  # any-size ONNX equals PyTorch on real images
    if available("openvino-fp32") is not None:
        why = available("openvino-fp32")
        assert f"not run: {why}" in rows["openvino-fp32"] and "pip install" in why
    assert cli_main(["benchmark", "--runtime", "tensorrt-fp4"]) == 2
    assert "tensorrt-fp4" in capsys.readouterr().err


def test_onednn_linear_is_chosen_by_measurement(monkeypatch, tmp_path):
    """By default the fp32 linear path is measured once: whichever of oneDNN and F.linear was
    faster is used, and both give the same numbers."""
    from yolos.model import kernels

    if not kernels._HAS_ONEDNN:
        pytest.skip("this torch build has no oneDNN linear")
    monkeypatch.setattr(kernels, "ONEDNN_LINEAR", None)
    monkeypatch.setattr(kernels, "_MEASURED", None)
    verdict = tmp_path / "verdict.txt"
    monkeypatch.setattr(kernels, "_verdict_file", lambda: verdict)
    x, w, b = torch.randn(300, 64), torch.randn(96, 64), torch.randn(96)
    with torch.no_grad():
        out = kernels.linear(x, w, b)
    assert kernels._MEASURED in (True, False)
    assert verdict.read_text().strip() == ("onednn" if kernels._MEASURED else "torch")  # kept for later processes
    monkeypatch.setattr(kernels, "_MEASURED", None)
    verdict.write_text("onednn\n")  # a later process reads the verdict instead of measuring
    with torch.no_grad():
        kernels.linear(x, w, b)
    assert kernels._MEASURED is True
    torch.testing.assert_close(out, torch.nn.functional.linear(x, w, b), rtol=0, atol=1e-5)
    calls = []
    monkeypatch.setattr(kernels, "_mm", lambda *a, **k: calls.append(1) or torch.nn.functional.linear(*a[:3]))
    with torch.no_grad():
        kernels.linear(x, w, b)
    assert bool(calls) == kernels._MEASURED  # the measured choice is the one used


def test_cli_benchmark_runtime_without_the_optional_packages(monkeypatch, capsys):
    """A runtime whose package is missing is one row saying how to install it; the rest run."""
    import importlib.util


    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("openvino", "onnxruntime") else real(name, *a))
    code = cli_main(["benchmark", "--runtime", "torch-int8", "onnxruntime-int8", "openvino-fp32", "--model", "micro",
                     "--random-weights", "--size", "64", "64", "--repeats", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| openvino-fp32 | not run: --runtime openvino needs openvino: pip install 'yolos[openvino]' |" in out
    assert "| onnxruntime-int8 | not run: --runtime onnxruntime needs onnxruntime: pip install 'yolos[export]'" in out
    assert "| torch-int8 |" in out and "| torch-fp32 |" in out
