"""``yolos train --cache``: decoded images and raw targets kept in memory serve the same items as
the files, bit for bit (plain and augmented, EXIF-turned images, crowd and clipped boxes), stay
unchanged whatever a caller does with an item, reach spawned DataLoader workers through shared
memory, and are refused when memory is short."""
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from yolos.data import transforms as T
from yolos.data.cache import cache_budget_problem
from yolos.data.dataset import DetectionDataset
from yolos.errors import DatasetError
from yolos.train.builders import cache_datasets
from yolos.train.config import TrainConfig
from yolos.train.loop import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def write_split(root, sizes=((64, 48), (80, 80), (33, 97), (120, 64)), turned: int | None = 2):
    """A COCO split with varied sizes; image ``turned`` saved landscape with EXIF orientation 6
    (displayed portrait); a crowd box and a box past the image's edge."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i, (w, h) in enumerate(sizes):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        name = f"{i}.jpg"
        if i == turned:  # stored turned a quarter left (h x w on disk), EXIF 6 turns it back for display
            stored = Image.fromarray(np.ascontiguousarray(np.rot90(pixels, 1)))
            exif = stored.getexif()
            exif[0x0112] = 6
            stored.save(root / name, quality=95, exif=exif.tobytes())
        else:
            Image.fromarray(pixels).save(root / name, quality=95)
        images.append({"id": 10 + i, "file_name": name, "width": w, "height": h})
        anns += [{"id": 3 * i + 1, "image_id": 10 + i, "category_id": 5, "bbox": [2, 3, w / 2, h / 3],
                  "area": w * h / 6, "iscrowd": 0},
                 {"id": 3 * i + 2, "image_id": 10 + i, "category_id": 7, "bbox": [w - 10, 1, 30, 8],
                  "area": 240, "iscrowd": 0},
                 {"id": 3 * i + 3, "image_id": 10 + i, "category_id": 7, "bbox": [0, 0, 5, 5],
                  "area": 25, "iscrowd": 1}]
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": 5, "name": "a"}, {"id": 7, "name": "b"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def same_item(a, b):
    assert torch.equal(a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for k, v in a[1].items():
        assert (torch.equal(v, b[1][k]) and v.dtype == b[1][k].dtype) if isinstance(v, torch.Tensor) \
            else v == b[1][k], k


def test_cached_items_equal_the_files_items_plain_and_augmented(tmp_path):
    root = write_split(tmp_path / "split")
    for transforms in (T.make_transforms("val", eval_size=(64, 96)),
                       T.make_transforms("train", scales=[48, 64], max_size=96, crop_resize=(40, 50),
                                         crop_size=(32, 48))):
        disk = DetectionDataset(root, root / "annotations.json", transforms=transforms)
        kept = DetectionDataset(root, root / "annotations.json", transforms=transforms)
        kept.keep_in_memory(threads=2)
        assert len(kept.cache) == len(kept) == 4
        assert kept.cache.nbytes == sum(w * h * 3 for w, h in kept.decoded_sizes().values())
        for i in range(len(disk)):
            for epoch in range(3):  # the same draws for both: the augmentation's random state seeded alike
                random.seed(epoch * 100 + i)
                a = disk[i]
                random.seed(epoch * 100 + i)
                same_item(a, kept[i])
    # the EXIF-turned file is kept as displayed (portrait), as it is read from disk
    image, _ = kept.read(12)
    assert image.size == (33, 97)


def test_a_cached_item_cannot_change_the_cache(tmp_path):
    root = write_split(tmp_path / "split")
    ds = DetectionDataset(root, root / "annotations.json", transforms=T.ToTensorNormalize())
    ds.keep_in_memory(threads=1)
    before = ds.cache.buffer.clone()
    image, target = ds.read(10)
    image.putpixel((0, 0), (1, 2, 3))
    for v in target.values():
        if isinstance(v, torch.Tensor):
            v.add_(7)
    again_image, again = ds.read(10)
    assert torch.equal(ds.cache.buffer, before)
    assert again_image.getpixel((0, 0)) != (1, 2, 3)
    assert again["labels"].tolist() == [0, 1] and again["iscrowd"].tolist() == [0, 0]
    assert again["orig_size"].tolist() == again["size"].tolist() == [48, 64]
    assert again["boxes"][1].tolist() == [54.0, 1.0, 64.0, 9.0]  # clipped at the right edge, by hand


def test_a_file_changed_since_the_check_is_read_from_disk(tmp_path):
    root = write_split(tmp_path / "split")
    ds = DetectionDataset(root, root / "annotations.json", transforms=T.ToTensorNormalize())
    Image.new("RGB", (50, 40), (9, 9, 9)).save(root / "1.jpg")  # checked as 80 x 80
    ds.keep_in_memory(threads=2)
    assert 11 not in ds.cache and len(ds.cache) == 3
    assert ds.read(11)[0].size == (50, 40)


def test_an_unreadable_file_fails_the_cache_naming_it(tmp_path):
    root = write_split(tmp_path / "split")
    ds = DetectionDataset(root, root / "annotations.json")
    (root / "3.jpg").write_bytes((root / "3.jpg").read_bytes()[:200])
    with pytest.raises(DatasetError, match="3.jpg"):
        ds.keep_in_memory(threads=2)
    assert ds.cache is None


def test_the_budget_by_hand():
    mib = 2**20
    assert cache_budget_problem(100 * mib, shared=False, free=201 * mib) is None
    assert cache_budget_problem(101 * mib, shared=False, free=200 * mib) == \
        "they need 101 MiB decoded, more than half of the 200 MiB of free memory"
    assert "need 3.0 GiB decoded, more than half of the 5.5 GiB" in cache_budget_problem(
        3 * 2**30, shared=False, free=int(5.5 * 2**30))
    assert cache_budget_problem(100 * mib, shared=True, free=10**12, shm_free=100 * mib) is None
    assert "/dev/shm, which has 64 MiB free for 65 MiB" in cache_budget_problem(65 * mib, shared=True, free=10**12,
                                                                    shm_free=64 * mib)


class _SharedFlag(torch.utils.data.Dataset):
    """An item and whether the worker sees the cache's buffer in shared memory (not a copy)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i], self.ds.cache.buffer.is_shared()


def test_spawned_workers_read_the_shared_buffer(tmp_path):
    root = write_split(tmp_path / "split")
    ds = DetectionDataset(root, root / "annotations.json", transforms=T.ToTensorNormalize())
    ds.keep_in_memory(threads=1, shared=False)
    assert not ds.cache.buffer.is_shared()
    ds.keep_in_memory(threads=1, shared=True)  # in /dev/shm from the start: never a second copy
    assert ds.cache.buffer.is_shared()
    loader = torch.utils.data.DataLoader(_SharedFlag(ds), batch_size=None, num_workers=1,
                                         multiprocessing_context="spawn")
    seen = list(loader)
    assert len(seen) == 4 and all(flag for _, flag in seen)
    for i, (item, _) in enumerate(seen):
        same_item(item, ds[i])


def test_cache_datasets_keeps_what_fits_and_says_why_not(tmp_path, monkeypatch):
    import yolos.data.cache as cache_module

    root = write_split(tmp_path / "split")
    train = DetectionDataset(root, root / "annotations.json")
    val = DetectionDataset(root, root / "annotations.json")
    said = []
    cfg = TrainConfig(cache=True, workers=0)
    record = cache_datasets(cfg, train, val, said.append)
    nbytes = sum(w * h * 3 for w, h in train.decoded_sizes().values())
    assert record["images"] == 8 and record["bytes"] == 2 * nbytes and record["time_s"] >= 0
    assert said[0].startswith("--cache: 4 training images in memory")
    assert cache_datasets(TrainConfig(workers=0), train, val, said.append) is None
    monkeypatch.setattr(cache_module, "available_memory", lambda: nbytes)  # half of it is too little
    fresh = DetectionDataset(root, root / "annotations.json")
    said.clear()
    record = cache_datasets(cfg, fresh, None, said.append)
    assert fresh.cache is None and record["images"] == 0
    assert said == ["--cache: the 4 training images are read from disk: they need 60 KiB decoded, more than "
                    "half of the 60 KiB of free memory"]


def test_fit_with_cache_trains_the_same_and_logs_it(tmp_path):
    from tests.test_train_loop import make_shapes, tiny_config

    data = make_shapes(tmp_path / "ds", n=8)
    runs = {}
    for name, kw in (("disk", {}), ("cache", dict(cache=True)), ("cache-forked-worker", dict(cache=True, workers=1))):
        out = tmp_path / name
        fit(tiny_config(data, out, epochs=2, lr=1e-3, augment=True, seed=5, **kw))
        rows = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
        runs[name] = [(r["train"]["loss"], r["val"]["AP"]) for r in rows if r["type"] == "epoch"]
        cached = [r for r in rows if r["type"] == "cache"]
        assert len(cached) == (1 if kw else 0)
        if cached:
            assert cached[0]["images"] == 8 + 4 and cached[0]["bytes"] == 12 * 64 * 64 * 3
    assert runs["cache"] == runs["disk"] == runs["cache-forked-worker"]


def test_a_resumed_run_may_turn_the_cache_on_or_off():
    from yolos.train.loop import resume_config

    said = []
    saved = TrainConfig(data="d", epochs=3, lr=1e-3).to_dict()
    merged = resume_config(saved, TrainConfig(cache=True, lr=5.0), {"cache", "lr"}, 1, said.append)
    assert merged.cache and merged.lr == 1e-3
    assert said == ["--lr 5.0: ignored, a resumed run keeps its own (0.001); start a new run (--init ...) to change it"]
