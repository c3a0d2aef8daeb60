"""[DET]-token inspection, attention maps and plots: constructed data with known answers, real
forward passes of random and bundled models, figures that are written and not blank."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from yolos import create_model
from yolos.analysis import det_tokens as dt
from yolos.analysis.attention import det_attention_maps, upsample
from yolos.analysis.plots import (
    category_fractions,
    plot_attention,
    plot_box_centres,
    plot_category_counts,
)

BUNDLED = Path(__file__).resolve().parents[1] / "yolos" / "assets" / "yolos-micro-shapes.safetensors"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from yolos.data.dataset import DetectionDataset
    from yolos.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("shapes")
    ann = write_synthetic_dataset(root, num_images=6, image_size=96, seed=1)
    return root, DetectionDataset(root / "images", ann)


def _not_blank(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert pixels.var() > 10.0  # something is drawn, not a flat canvas


# ----------------------------------------------------------------- correlations
def test_pearson_matches_numpy():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(50, generator=g), torch.randn(50, generator=g)
    y = y + 0.5 * x
    assert dt.pearson(x, y) == pytest.approx(np.corrcoef(x.numpy(), y.numpy())[0, 1], abs=1e-12)
    assert np.isnan(dt.pearson(torch.ones(5), x[:5]))
    with pytest.raises(ValueError):
        dt.pearson(x[:1], y[:1])


def _features_with_cosine(gram: torch.Tensor) -> torch.Tensor:
    # rows whose pairwise cosine similarities are exactly ``gram`` (unit diagonal, PSD)
    w, v = torch.linalg.eigh(gram.double())
    return v * w.clamp(min=0).sqrt()


def test_cosine_exactly_linear_in_distance_gives_minus_one():
    g = torch.Generator().manual_seed(0)
    t = 12
    x = torch.rand(t, generator=g)
    centres = torch.stack([x, torch.full((t,), 0.5)], 1)  # on a horizontal line: distance = |dx|
    # 1 - |dx| / 2 is a positive-definite kernel on [0, 1] (a triangle function), so features
    # with these cosine similarities exist: cos = 1 - distance / 2 exactly
    gram = 1 - (x[:, None] - x[None, :]).abs() / 2
    feats = _features_with_cosine(gram)
    rho_d, rho_c = dt.pair_correlations(feats, centres, class_features=feats)
    assert rho_d == pytest.approx(-1.0, abs=1e-9)
    assert rho_c == pytest.approx(1.0, abs=1e-9)  # class features identical to the token features
    _, rho_neg = dt.pair_correlations(feats, centres, class_features=torch.ones(t, 1))
    assert np.isnan(rho_neg)  # constant class similarity: undefined, reported as nan


def test_independent_features_give_near_zero():
    g = torch.Generator().manual_seed(1)
    rhos = [dt.pair_correlations(torch.randn(100, 32, generator=g), torch.rand(100, 2, generator=g),
                                 torch.randn(100, 8, generator=g)) for _ in range(20)]
    rd, rc = np.array(rhos).T
    assert abs(rd.mean()) < 0.03 and abs(rc.mean()) < 0.03


def test_size_classes_use_coco_thresholds():
    areas = torch.tensor([0.0, 32**2 - 1, 32**2, 96**2 - 1, 96**2, 1e6])
    assert dt.size_class(areas).tolist() == [0, 0, 1, 1, 2, 2]


def test_category_counts_and_fractions_by_hand():
    # 2 images x 3 tokens
    labels = torch.tensor([[0, 1, 1], [0, 0, 1]])
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.6, 0.7, 0.9]])
    stats = dt.TokenStats(torch.zeros(2, 3, 2), torch.zeros(2, 3), labels, scores, torch.zeros(2),
                          torch.zeros(2), gt_labels=torch.tensor([0, 0, 0, 1]))
    counts = stats.category_counts(2, threshold=0.5)
    assert counts.tolist() == [[2, 0], [1, 1], [0, 1]]  # token 2's first prediction is below 0.5
    f = category_fractions(stats, 2, 0.5)
    assert f["gt"].tolist() == [0.75, 0.25]
    # per-token fractions of class 0: 1, 0.5, 0 -> mean 0.5, std (sample) 0.5
    assert f["mean"].tolist() == pytest.approx([0.5, 0.5])
    assert f["std"].tolist() == pytest.approx([0.5, 0.5])


# ------------------------------------------------------------ real forward passes
def test_inspect_image_shapes_and_consistency():
    model = create_model("micro").eval()
    x = torch.randn(1, 3, 96, 128)
    r = dt.inspect_image(model, x, (300, 400))
    t = model.config.num_det_tokens
    assert r["centres"].shape == (t, 2) and r["features"].shape == (t, 128)
    assert r["labels"].max() < model.config.num_classes  # no-object never the argmax label
    out = model(x)
    assert torch.allclose(r["centres"], out["pred_boxes"][0, :, :2])
    w, h = out["pred_boxes"][0, :, 2], out["pred_boxes"][0, :, 3]
    assert torch.allclose(r["areas"], w * 400 * h * 300)
    cos = torch.nn.functional.cosine_similarity(r["features"][0], r["features"][1], dim=0)
    assert -1 <= r["rho_distance"] <= 1 and -1 <= r["rho_class"] <= 1 and cos <= 1
    with pytest.raises(ValueError, match="one image"):
        dt.inspect_image(model, x.repeat(2, 1, 1, 1), (96, 128))


def test_attention_maps_are_the_det_rows_over_patches():
    model = create_model("micro").eval()
    x = torch.randn(1, 3, 64, 96)
    maps = det_attention_maps(model, x, [0, 3])
    assert maps["maps"].shape == (2, 4, 4, 6) and maps["mean"].shape == (2, 4, 6)
    att = model(x, output_attentions=True)["attentions"][0]  # [heads, S, S]
    s = att.shape[-1]
    assert s == 1 + 24 + 10
    row = att[:, s - 10 + 3, 1:25].reshape(4, 4, 6)  # token 3, patches in row-major order
    assert torch.allclose(maps["maps"][1], row)
    assert torch.allclose(maps["mean"], maps["maps"].mean(1))
    assert (maps["maps"].sum((-1, -2)) <= 1 + 1e-5).all()
    assert upsample(maps["mean"], (64, 96)).shape == (2, 64, 96)
    with pytest.raises(ValueError, match="out of range"):
        det_attention_maps(model, x, [10])


def test_collect_and_plots_on_random_model(shapes, tmp_path):
    _, ds = shapes
    model = create_model("micro").eval()
    stats = dt.collect(model, ds, short_side=96, long_side=96, max_images=4, progress=False)
    assert stats.centres.shape == (4, 10, 2) and stats.labels.shape == (4, 10)
    n_gt = sum(1 for i in ds.ids[:4] for a in ds.annotations[i] if not a.get("iscrowd", 0))
    assert stats.gt_labels.numel() == n_gt
    summary = stats.summary()
    assert summary["images"] == 4 and summary["class_feature"] == "logits"
    json.dumps(summary)
    _not_blank(plot_box_centres(stats, tmp_path / "f2.png"))
    path, frac = plot_category_counts(stats, tmp_path / "f3.png", ds.class_names, threshold=0.0)
    _not_blank(path)
    assert frac["counts"].sum() == 40  # threshold 0: every prediction counts
    image = ds.load_image(ds.ids[0]).resize((96, 96))
    maps = det_attention_maps(model, torch.randn(1, 3, 96, 96), [0, 1])
    _not_blank(plot_attention(image, maps, [0, 1], tmp_path / "att.png", ds.class_names))


def test_cli_end_to_end(shapes, tmp_path, capsys):
    from yolos.cli import main

    root, _ = shapes
    ckpt = tmp_path / "micro.safetensors"
    create_model("micro").save(ckpt)
    out = tmp_path / "out"
    assert main(["analyze", "--model", str(ckpt), "--data", str(root), "--out", str(out), "--val-fraction", "0",
                 "--max-images", "3", "--tokens", "0", "2", "--quiet"]) == 0
    result = json.loads((out / "analysis.json").read_text())
    assert result["images"] == 3 and result["paper"]["rho_cosine_vs_centre_distance"] == -0.80
    for name in result["files"]:
        _not_blank(out / name)
    assert "rho(cos [DET] features, centre distance)" in capsys.readouterr().out


@pytest.mark.skipif(not BUNDLED.exists(), reason="bundled micro checkpoint not built yet")
def test_bundled_model_tokens_localize(shapes):
    from yolos.checkpoint import from_pretrained

    _, ds = shapes
    model = from_pretrained(BUNDLED).eval()
    stats = dt.collect(model, ds, 96, 96, progress=False)
    # a trained detector: similar tokens predict nearby boxes (the paper's sign)
    assert float(stats.rho_distance.nanmean()) < 0
