"""A split's decoded images and raw targets kept in memory (``yolos train --cache``): what
Ultralytics' ``cache=ram`` does, for the epochs after the first read.

Every image of a :class:`~yolos.data.dataset.DetectionDataset` is decoded once, before training,
into one flat ``uint8`` buffer, and its target before the transforms (``raw_target``) is kept as
numpy arrays; an item then costs its transforms only. The images kept are the decoded ones, not
a resized copy, so every pixel a transform sees is the pixel it would have read from the file
(augmentation included). Decoding runs on threads: Pillow's decoders release the GIL, its JPEG
header parsing does not, so large images gain (1.7x on 2 cores at 640x480) and small ones little.

Why one buffer and numpy targets: DataLoader workers started by ``fork`` share the parent's
pages untouched, and under ``spawn``/``forkserver`` a tensor in shared memory travels as one
handle (ten thousand tensors would be ten thousand file descriptors). torch would move a private
buffer to shared memory when the first worker starts, holding two copies for a moment; for such
workers the buffer is made there from the start. Memory is checked before anything is decoded:
:func:`cache_budget_problem` says why a split is left on disk.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

SHARE_OF_FREE_MEMORY = 0.5  # the most of the free memory a cache may take


def available_memory() -> int | None:
    """Bytes the kernel can still give without swapping (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def shared_memory_free() -> int | None:
    """Free bytes of ``/dev/shm`` (where shared tensors live; 64 MiB by default in Docker)."""
    try:
        st = os.statvfs("/dev/shm")
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def size_text(nbytes: int) -> str:
    """``nbytes`` in GiB, MiB or KiB, whichever reads best."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}" if nbytes < 10 * scale else f"{nbytes / scale:.0f} {unit}"
    return f"{nbytes / 2**10:.0f} KiB"


def cache_budget_problem(nbytes: int, shared: bool, free: int | None = None,
                         shm_free: int | None = None) -> str | None:
    """Why ``nbytes`` of decoded images should not be cached, or None. ``shared``: the buffer
    must go to ``/dev/shm`` (DataLoader workers that are not forked)."""
    free = available_memory() if free is None else free
    if free is None:
        return "the free memory of this system is unknown"
    if nbytes > SHARE_OF_FREE_MEMORY * free:
        return f"they need {size_text(nbytes)} decoded, more than half of the {size_text(free)} of free memory"
    if shared:
        shm_free = shared_memory_free() if shm_free is None else shm_free
        if shm_free is not None and nbytes > shm_free:
            return (f"DataLoader workers that are not forked share them through /dev/shm, which has "
                    f"{size_text(shm_free)} free for {size_text(nbytes)}")
    return None


class ImageCache:
    """``image id -> (PIL RGB image, raw target dict)`` for the ids given, filled by :meth:`fill`.

    ``sizes``: ``image id -> (width, height)`` of each decoded image (the checked split's, in the
    displayed frame), which lays out the buffer before anything is decoded.
    """

    def __init__(self, sizes: dict[int, tuple[int, int]], shared: bool = False):
        self.slots: dict[int, tuple[int, int, int]] = {}  # id -> (offset, height, width)
        offset = 0
        for image_id, (w, h) in sizes.items():
            self.slots[image_id] = (offset, h, w)
            offset += h * w * 3
        self.nbytes = offset
        self.buffer = torch.empty(offset, dtype=torch.uint8)
        if shared:
            self.buffer.share_memory_()
        self.targets: dict[int, dict] = {}

    def __contains__(self, image_id: int) -> bool:
        return image_id in self.targets

    def __len__(self) -> int:
        return len(self.targets)

    def fill(self, load, threads: int = 2) -> None:
        """``load(image id) -> (PIL RGB image, raw target)`` for every id, decoded on ``threads``
        threads. An image whose decoded size is not its slot's (the file changed since it was
        checked) stays uncached and is read from disk; a load error propagates."""
        def put(image_id):
            image, target = load(image_id)
            offset, h, w = self.slots[image_id]
            if (image.height, image.width) != (h, w) or image.mode != "RGB":
                return
            view = self.buffer[offset: offset + h * w * 3].numpy().reshape(h, w, 3)
            view[...] = np.asarray(image)
            # numpy, not tensors: under spawn each tensor would travel as its own file descriptor
            self.targets[image_id] = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in target.items()}

        def put_all(ids):
            for image_id in ids:
                put(image_id)

        # One contiguous run of ids a thread: a task per image cost more than a small image's decode.
        ids = list(self.slots)
        threads = max(1, min(threads, len(ids)))
        runs = [ids[k * len(ids) // threads: (k + 1) * len(ids) // threads] for k in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(put_all, runs):  # in order: the error raised is the earliest run's
                pass

    def get(self, image_id: int) -> tuple[Image.Image, dict]:
        """The decoded image (a copy the transforms may change) and a fresh raw target."""
        offset, h, w = self.slots[image_id]
        pixels = self.buffer[offset: offset + h * w * 3].numpy().reshape(h, w, 3)
        target = {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v
                  for k, v in self.targets[image_id].items()}
        return Image.fromarray(pixels), target


__all__ = ["ImageCache", "available_memory", "cache_budget_problem", "shared_memory_free", "size_text"]
