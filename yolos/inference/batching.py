"""Padding-free batching: group items by the size they are resized to, so no batch is ever padded
(YOLOS has no pixel mask: padding changes its outputs). Prediction, evaluation and the server
batch this way."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator


def same_size_batches(items: Iterable, size_of: Callable, batch_size: int,
                      max_waiting: int | None = None) -> Iterator[tuple[object, list]]:
    """``(size, group)``: ``items`` grouped by ``size_of(item)`` into lists of at most
    ``batch_size``, each group given as soon as it is full. With ``max_waiting``, the fullest
    group also goes once that many items wait, which bounds memory when many sizes are in flight;
    what is left goes at the end. Padding-free batching for prediction and evaluation alike."""
    groups: dict[object, list] = {}
    waiting = 0
    for item in items:
        size = size_of(item)
        group = groups.setdefault(size, [])
        group.append(item)
        waiting += 1
        if len(group) == batch_size:
            waiting -= len(group)
            yield size, groups.pop(size)
        elif max_waiting is not None and waiting >= max_waiting:
            fullest = max(groups, key=lambda k: len(groups[k]))
            waiting -= len(groups[fullest])
            yield fullest, groups.pop(fullest)
    for size in list(groups):
        yield size, groups.pop(size)


def chunks(items: Iterable, n: int) -> Iterator[list]:
    """Lists of ``n`` consecutive items (the last one may be shorter), in order."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
