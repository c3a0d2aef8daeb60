"""The bundled model works off its training images: shapes drawn the simple way with PIL (plain
background of any colour, saturated or pale fills, 18-48 px; benchmarks/simple_shapes.py, an
independent drawing) are found with precision and recall at least 0.9, and the quick start's
example image gives exactly its shapes."""
from __future__ import annotations

import random

import torch

import yolos
from benchmarks.simple_shapes import draw_image, score
from yolos.box_ops import box_iou
from yolos.data.shapes import ShapesSpec, render_shapes
from yolos.defaults import DEFAULT_IMAGE, DEFAULT_MODEL


def test_simple_drawings_are_found():
    model = yolos.from_pretrained(DEFAULT_MODEL)
    rnd = random.Random(31)  # not the benchmark's seed
    drawn = [draw_image(rnd) for _ in range(120)]
    found = model.predict([image for image, _ in drawn], batch_size=32)
    tp = dets = objs = 0
    for det, (_, objects) in zip(found, drawn):
        a, b, c = score(det, objects, model.config.class_names)
        tp, dets, objs = tp + a, dets + b, objs + c
    assert tp / dets >= 0.9 and tp / objs >= 0.9, (tp, dets, objs)


def test_the_quick_start_example_gives_its_shapes():
    """The bundled example is image 22 of the generator's set at seed 4243 (384 px, 4-8 shapes of
    36-192 px, the classic look); its own boxes and labels are the answer."""
    import numpy as np

    spec = ShapesSpec(384, 4, 8, ("square", "circle", "triangle"), 36, 192)
    rng = np.random.default_rng(4243)
    for _ in range(22):
        pixels, objects = render_shapes(rng, spec)
    drawn = np.asarray(yolos.load_image(DEFAULT_IMAGE), dtype=np.float32)
    assert np.abs(drawn - pixels).mean() < 3  # the file is that image (JPEG-compressed)
    det = yolos.from_pretrained(DEFAULT_MODEL).predict(DEFAULT_IMAGE)[0]
    names = {1: "square", 2: "circle", 3: "triangle"}
    truth = torch.tensor([[o["bbox"][0], o["bbox"][1], o["bbox"][0] + o["bbox"][2], o["bbox"][1] + o["bbox"][3]]
                          for o in objects], dtype=torch.float32)
    assert len(det) == len(objects)
    iou = box_iou(det.boxes, truth)[0]
    for i, j in enumerate(iou.argmax(1).tolist()):
        assert iou[i, j] > 0.7 and det.label_names[i] == names[objects[j]["category_id"]]
