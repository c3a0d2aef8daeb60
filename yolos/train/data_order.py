"""The deterministic data order of a training run, so that a resumed run sees exactly the data of
an uninterrupted one: the sample order of epoch ``e`` is a permutation seeded by ``(seed, e)``
and every sample's augmentation is seeded by ``(seed, e, index)``, independent of workers and
ranks; a resumed run skips the batches already done."""
from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class SeededDataset(Dataset):
    """``dataset`` repeated ``repeat`` times; item ``i`` of epoch ``e`` is produced with the
    python/numpy/torch generators seeded from ``(seed, e, i)`` (python's and torch's then
    restored), so random augmentation is a pure function of the position in the run."""

    def __init__(self, dataset, seed: int, repeat: int = 1):
        self.dataset, self.seed, self.repeat, self._epoch = dataset, seed, max(1, repeat), 0

    @property
    def epoch(self) -> int:
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        # Datasets that render their items (SyntheticShapes) draw new ones per epoch.
        self._epoch = value
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(value)

    def __len__(self) -> int:
        return len(self.dataset) * self.repeat

    def __getitem__(self, i: int):
        s = (self.seed * 1_000_003 + self.epoch * 10_007 + i) % (2**31)
        py = random.getstate()
        random.seed(s)
        # numpy's global generator is seeded for any transform that draws from it, and left so:
        # saving and restoring its 624-word state cost 0.15-0.19 ms an item (a tenth of a file's
        # load), and nothing else in a run draws from it (fit seeds it once at the start).
        np.random.seed(s)
        try:
            with torch.random.fork_rng(devices=[]):
                # The CPU generator only, where the transforms draw: torch.manual_seed also queues
                # a seed for every accelerator with a formatted stack (0.3 ms an item on a CPU).
                torch.default_generator.manual_seed(s)
                return self.dataset[i % len(self.dataset)]
        finally:
            random.setstate(py)


class ResumableSampler(Sampler[int]):
    """DistributedSampler semantics (seeded permutation per epoch, padded to a multiple of the
    world size, rank ``r`` takes positions ``r::world``) plus a start offset in batches.

    With rank-strided positions, global step ``s`` covers positions ``[s*B*W, (s+1)*B*W)`` of the
    permutation whatever the world size, so N processes at batch B see the same global batches
    as one process at batch N*B.
    """

    def __init__(self, size: int, *, batch_size: int, world_size: int = 1, rank: int = 0,
                 seed: int = 0, shuffle: bool = True):
        self.size, self.batch_size, self.world_size, self.rank = size, batch_size, world_size, rank
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start_batch = 0, 0
        self.per_rank = math.ceil(size / world_size)
        self.drop_last = self.per_rank >= batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def batches_per_epoch(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return math.ceil(self.per_rank / self.batch_size)

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank * self.world_size
        order += order[: total - len(order)] if total > len(order) else []
        mine = order[self.rank:total:self.world_size]
        if self.drop_last:
            mine = mine[: self.batches_per_epoch() * self.batch_size]
        return mine[self.start_batch * self.batch_size:]

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())
