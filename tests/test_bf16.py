"""The bf16 inference mode: close to fp32 on random weights, the same detections on the bundled
model, the same AP, and the option on every command that has it."""
from __future__ import annotations

import json

import pytest
import torch

from yolos import create_model, from_pretrained
from yolos.cli import main
from yolos.data.dataset import DetectionDataset
from yolos.data.synthetic import write_synthetic_dataset
from yolos.data.transforms import make_transforms
from yolos.defaults import DEFAULT_MODEL
from yolos.evaluation.evaluate import evaluate
from yolos.inference.precision import precision_for

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16")
    write_synthetic_dataset(root, 100, 128, 1, 8, seed=77_001, min_size=12, max_size=64)
    return root


def test_random_weights_outputs_close_to_fp32():
    torch.manual_seed(0)
    model = create_model("micro", num_det_tokens=20).eval()
    x = torch.randn(2, 3, 128, 192)
    with torch.inference_mode():
        ref = model(x)
        with precision_for(model, "bf16")():
            low = model(x)
    assert low["logits"].dtype == torch.float32  # the heads stay fp32
    d_logits = (low["logits"].float() - ref["logits"]).abs().max().item()
    d_boxes = (low["pred_boxes"].float() - ref["pred_boxes"]).abs().max().item()
    assert 0 < d_logits < 0.05 and d_boxes < 0.01, (d_logits, d_boxes)  # > 0: bf16 really ran


@pytest.mark.parametrize("onednn", [True, False])
def test_both_bf16_gemm_paths_stay_close_to_fp32(monkeypatch, onednn):
    """oneDNN's bf16 kernels need AVX-512; without them (AVX2-only CPUs) PyTorch's own bf16 GEMM
    runs. Both paths are forced here, so each is checked on whichever CPU runs the tests."""
    from yolos.model import kernels

    if onednn and not (kernels._HAS_ONEDNN and kernels._onednn_runs(torch.bfloat16)):
        pytest.skip("oneDNN has no bf16 inner product on this CPU (no AVX-512)")
    monkeypatch.setitem(kernels._LOW_ONEDNN, torch.bfloat16, onednn)
    torch.manual_seed(0)
    model = create_model("micro", num_det_tokens=20).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.inference_mode():
        ref = model(x)["pred_boxes"]
        with precision_for(model, "bf16")():
            low = model(x)["pred_boxes"]
    assert 0 < (low - ref).abs().max().item() < 0.01


def test_low_precision_is_a_snapshot_used_only_without_gradients():
    """The cast weights are made once per precision_for call and used only with gradients off:
    a backward pass under the context gives the fp32 gradients bit for bit, and after an
    in-place optimizer step a new precision_for follows the new weights."""
    torch.manual_seed(0)
    model = create_model("micro", num_det_tokens=10)
    x = torch.randn(2, 3, 64, 96)
    compute = precision_for(model, "bfloat16")

    def grads(context):
        model.zero_grad(set_to_none=True)
        with context():
            out = model(x)
            (out["logits"].square().mean() + out["pred_boxes"].sum()).backward()
        return [p.grad.clone() for p in model.parameters()]

    plain, under = grads(precision_for(model, None)), grads(compute)
    for a, b in zip(plain, under):
        assert torch.equal(a, b)  # gradients on: the fp32 weights, bit for bit
    model.eval()
    with torch.inference_mode():
        before = model(x)["logits"]
        with compute():
            old_low = model(x)["logits"]
        torch.optim.AdamW(model.parameters(), lr=0.05, fused=True).step()  # in place, no version bump
        after = model(x)["logits"]
        with precision_for(model, "bfloat16")():
            new_low = model(x)["logits"]
    assert (after - before).abs().max() > 0.1  # the step really changed the model
    assert (new_low - after).abs().max() < (old_low - after).abs().max()


def test_low_precision_stays_in_its_thread_and_whole_bf16_models_run():
    """The mode is per thread (a server's model thread does not change other callers' numbers),
    and a model cast to bf16 as a whole takes the same fused path."""
    import threading

    torch.manual_seed(0)
    model = create_model("micro", num_det_tokens=10).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        ref = model(x)["logits"]
        seen = {}
        with precision_for(model, "bf16")():
            thread = threading.Thread(target=lambda: seen.update(out=model(x)["logits"]))
            thread.start()
            thread.join()
            low = model(x)["logits"]
        assert torch.equal(seen["out"], ref) and not torch.equal(low, ref)
        whole = create_model("micro", num_det_tokens=10).eval()
        whole.load_state_dict(model.state_dict())
        out = whole.to(torch.bfloat16)(x.bfloat16())["logits"]
    assert out.dtype == torch.bfloat16 and (out.float() - ref).abs().max() < 0.1


def test_bundled_model_same_detections_and_ap(held_out):
    model = from_pretrained(DEFAULT_MODEL)
    files = sorted((held_out / "images").iterdir())
    fp32 = model.predict(files)
    bf16 = model.predict(files, dtype="bfloat16")
    same = 0
    for a, b in zip(fp32, bf16):
        if a.label_names == b.label_names and (len(a) == 0 or (a.boxes - b.boxes).abs().max() <= 2.0):
            same += 1
    assert sum(len(d) for d in fp32) > 100, "the bundled model finds too little for this to mean anything"
    # measured: 492-495 of 500 on four held-out sets (benchmarks/precision_fidelity.py); the images
    # that differ hold a score within a few hundredths of the threshold
    assert same >= 0.96 * len(files), f"{same} of {len(files)} images with identical detections"
    data = DetectionDataset(held_out / "images", held_out / "annotations.json", transforms=make_transforms(
        "val", eval_size=(128, 128)))
    ap32 = evaluate(model, data, batch_size=16, progress=False)[0]["AP"]
    ap16 = evaluate(model, data, batch_size=16, progress=False, dtype="bf16")[0]["AP"]
    assert abs(ap32 - ap16) <= 0.005, (ap32, ap16)  # measured at most 0.0012 on four sets of 500


def test_cli_dtype_option(tmp_path, held_out, capsys):
    image = sorted((held_out / "images").iterdir())[0]
    assert main(["predict", str(image), "--dtype", "bf16", "--out", str(tmp_path / "p"), "--no-images"]) == 0
    assert json.loads((tmp_path / "p" / "predictions.json").read_text())["images"]
    assert main(["benchmark", "--images", "2", "--warmup", "1", "--dtype", "bf16"]) == 0
    assert "bfloat16" in capsys.readouterr().out
    for command in (["predict"], ["val", "--data", str(held_out)], ["benchmark"], ["serve"]):
        with pytest.raises(SystemExit) as err:
            main(command + ["--dtype", "int4"])
        assert err.value.code == 2
        assert "--dtype" in capsys.readouterr().err
    with pytest.raises(ValueError, match="dtype"):
        from_pretrained(DEFAULT_MODEL).predict(image, dtype="int4")
