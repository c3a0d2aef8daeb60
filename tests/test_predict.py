"""predict: padding-free batching equals one-at-a-time, parity with transformers, Detections."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import yolos
from yolos.errors import ImageError
from yolos.inference import Detections, eval_sizes, postprocess, predict, preprocess


def _images():
    rng = np.random.default_rng(0)
    shapes = [(480, 640), (300, 200), (480, 640), (640, 480), (480, 640), (333, 500), (300, 200)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    return yolos.create_model("micro").eval()


def _assert_same(a: Detections, b: Detections):
    assert a.image_size == b.image_size
    assert torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=0)


def test_batched_equals_one_at_a_time(micro, monkeypatch):
    images = _images()
    batched = predict(micro, images, threshold=0.0, batch_size=3)
    single = [predict(micro, im, threshold=0.0)[0] for im in images]
    assert len(batched) == len(images)
    for a, b in zip(batched, single):
        assert len(a) == micro.config.num_det_tokens  # threshold 0 keeps every [DET] token
        _assert_same(a, b)
    # A small waiting cap forces partial buckets to flush early: same answers, same order.
    import yolos.inference.predictor as predictor

    monkeypatch.setattr(predictor, "WAITING_FACTOR", 1)
    calls = []
    hook = micro.patch_embed.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        flushed = predict(micro, images, threshold=0.0, batch_size=3)
    finally:
        hook.remove()
    # Sizes here: 3x (96, 128), 2x (128, 80), (128, 96), (80, 128). Uncapped, the first bucket fills
    # to 3; with a cap of 3 waiting images it is flushed with 2 before that.
    assert sum(calls) == len(images) and max(calls) < 3
    for a, b in zip(flushed, single):
        _assert_same(a, b)
    # Why bucketing matters: a padded mixed-size batch really changes the outputs.
    padded = preprocess(images[:2], 128, 128)
    with torch.inference_mode():
        logits = micro(padded["pixel_values"])["logits"]
        alone = micro(preprocess(images[1], 128, 128)["pixel_values"])["logits"]
    assert not torch.allclose(logits[1], alone[0], atol=1e-3)


def test_default_sizes_and_options(micro):
    assert eval_sizes(micro.config) == (128, 128)
    assert eval_sizes(yolos.get_variant("yolos-ti").config) == (512, 1333)
    assert eval_sizes(yolos.get_variant("yolos-s").config) == (800, 1333)
    assert eval_sizes(micro.config.replace(variant=None)) == (128, 128)  # no name: found by its shape
    assert eval_sizes(micro.config.replace(variant=None, hidden_size=96)) == (800, 1333)  # no variant's shape
    im = _images()[0]
    top = predict(micro, im, threshold=0.0, top_k=3)[0]
    full = predict(micro, im, threshold=0.0)[0]
    assert len(top) == 3
    torch.testing.assert_close(top.scores, full.scores.sort(descending=True).values[:3])
    # Explicit sizes reach the model: 512-short-side input of the 640x480 image is 512x672.
    seen = []
    hook = micro.patch_embed.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    try:
        predict(micro, im, short_side=512, long_side=1333)
    finally:
        hook.remove()
    assert seen == [(512, 672)]
    # A [B, C, H, W] tensor is B images.
    chw = torch.from_numpy(np.stack([im, im])).permute(0, 3, 1, 2)
    assert len(predict(micro, chw, threshold=0.0)) == 2
    assert micro.training is False
    micro.train()
    predict(micro, im)
    assert micro.training is True  # mode restored
    micro.eval()


def test_bad_image_raises_naming_it(micro, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_text("nope")
    with pytest.raises(ImageError, match="broken.jpg"):
        predict(micro, [_images()[0], bad])


def test_matches_transformers_model_and_processor(tmp_path, cats_png):
    transformers = pytest.importorskip("transformers")
    from transformers.models.yolos.image_processing_pil_yolos import YolosImageProcessorPil

    cfg = transformers.YolosConfig(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
        image_size=[160, 224], num_detection_tokens=12, num_labels=5, use_mid_position_embeddings=True,
        id2label={i: f"thing{i}" for i in range(5)}, label2id={f"thing{i}": i for i in range(5)},
    )
    torch.manual_seed(1)
    hf = transformers.YolosForObjectDetection(cfg).eval()
    with torch.no_grad():  # random, non-trivial weights everywhere (tokens and embeddings too)
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path / "hf")
    ours = yolos.from_pretrained(tmp_path / "hf")

    image = Image.open(cats_png).convert("RGB")
    processor = YolosImageProcessorPil(size={"shortest_edge": 320, "longest_edge": 1333})
    inputs = processor(images=image, return_tensors="pt")
    with torch.no_grad():
        out = hf(pixel_values=inputs["pixel_values"])
    ref = processor.post_process_object_detection(out, threshold=0.0, target_sizes=[(480, 640)])[0]

    det = predict(ours, cats_png, threshold=0.0, short_side=320, long_side=1333)[0]
    assert det.path == str(cats_png) and det.image_size == (480, 640)
    assert torch.equal(det.labels, ref["labels"])
    torch.testing.assert_close(det.scores, ref["scores"], atol=1e-4, rtol=0)
    torch.testing.assert_close(det.boxes, ref["boxes"], atol=1e-2, rtol=0)
    assert det.label_names == [f"thing{i}" for i in ref["labels"].tolist()]
    # The same through the raw pieces: preprocess -> model -> postprocess.
    batch = preprocess(cats_png, short_side=320)
    torch.testing.assert_close(batch["pixel_values"], inputs["pixel_values"], atol=1e-4, rtol=0)
    with torch.inference_mode():
        raw = postprocess(ours(batch["pixel_values"]), batch["original_sizes"], threshold=0.0)[0]
    torch.testing.assert_close(raw["scores"], ref["scores"], atol=1e-4, rtol=0)


def _handmade():
    return Detections(
        boxes=torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 30.5, 10.9]]),
        scores=torch.tensor([0.9, 0.61]),
        labels=torch.tensor([17, 63]),
        label_names=["cat", "couch"],
        image_size=(100, 120),
    )


def test_detections_exports():
    d = _handmade()
    assert len(d) == 2
    assert "cat (1)" in repr(d) and "couch (1)" in repr(d)
    assert d.to_dict() == [
        {"score": pytest.approx(0.9), "label": "cat", "box": {"xmin": 10, "ymin": 20, "xmax": 50, "ymax": 80}},
        {"score": pytest.approx(0.61), "label": "couch", "box": {"xmin": 0, "ymin": 0, "xmax": 30, "ymax": 10}},
    ]
    coco = d.to_coco(image_id=42)
    assert coco[0] == {"image_id": 42, "category_id": 17, "bbox": [10.0, 20.0, 40.0, 60.0], "score": pytest.approx(0.9)}
    assert [c["category_id"] for c in d.to_coco(1, {17: 3, 63: 5})] == [3, 5]
    assert [c["category_id"] for c in d.to_coco(1, lambda label: label + 1)] == [18, 64]
    assert len(Detections.empty((10, 10))) == 0


def test_plot_draws_class_colours(tmp_path):
    d = _handmade()
    white = Image.new("RGB", (120, 100), "white")
    with pytest.raises(ValueError, match="needs an image"):
        d.plot()
    out = d.plot(white, line_width=2)
    assert out.size == (120, 100) and np.asarray(white).min() == 255  # the input is untouched
    a = np.asarray(out).astype(int)
    # The cat box's right edge (x = 50) is drawn in the cat colour; the box interior is untouched.
    from yolos.inference.detections import class_color

    np.testing.assert_array_equal(a[60, 50], class_color(17))
    np.testing.assert_array_equal(a[60, 30], [255, 255, 255])
    assert class_color(17) != class_color(63)
    assert (a != 255).any(axis=-1).sum() > 200  # tags with text were drawn
    d.image_size = (100, 121)
    with pytest.raises(ValueError, match="121x100"):
        d.plot(white)
