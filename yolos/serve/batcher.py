"""A bounded queue in front of one model: requests wait in it, one thread runs the model.

Why a queue and one thread: a forward pass already uses every core (torch's intra-op threads),
so running two at once only makes both slower, and an unbounded backlog turns overload into
ever-growing memory and timeouts. Here at most ``max_queue`` requests wait; the next one is
refused at once (:class:`QueueFull`, which the server answers with 503 and ``Retry-After``).

The thread takes up to ``max_batch`` waiting requests at a time and hands them to
:func:`yolos.inference.predictor.predict`, which only batches images of the same resized size
(no padding), so a request's detections do not depend on what it was batched with.
"""
from __future__ import annotations

import ctypes
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from PIL import Image

from .. import defaults
from ..inference.precision import precision_for
from ..inference.predictor import predict


def release_free_memory() -> None:
    """Hand freed heap memory back to the system (glibc's malloc_trim), so a server that decoded
    large images shrinks again when idle; a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class QueueFull(RuntimeError):
    """The queue holds ``max_queue`` requests already."""


@dataclass
class _Job:
    image: Image.Image
    threshold: float
    top_k: int | None
    future: Future


class Batcher:
    """``submit(image, threshold, top_k) -> Future[Detections]``; ``close()`` stops the thread."""

    def __init__(self, model, max_queue: int = defaults.MAX_QUEUE, max_batch: int = defaults.MAX_BATCH, dtype=None):
        if max_queue < 1 or max_batch < 1:
            raise ValueError("max_queue and max_batch must be >= 1")
        self.model = model
        self.max_batch = max_batch
        # The served model never trains: its low-precision weights are cast once, here.
        self._compute = precision_for(model, dtype)
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._running = 0  # requests taken off the queue and not finished yet
        self._lock = threading.Lock()
        self.images_done = 0
        self._thread = threading.Thread(target=self._work, name="yolos-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting or running."""
        with self._lock:
            return self._jobs.qsize() + self._running

    def submit(self, image: Image.Image, threshold: float = defaults.THRESHOLD, top_k: int | None = None) -> Future:
        future: Future = Future()
        try:
            self._jobs.put_nowait(_Job(image, threshold, top_k, future))
        except queue.Full:
            raise QueueFull(f"the queue is full ({self._jobs.maxsize} requests waiting)") from None
        return future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _take(self) -> list[_Job] | None:
        first = self._jobs.get()
        if first is None:
            return None
        jobs = [first]
        while len(jobs) < self.max_batch:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:  # close() while busy: finish these, then stop
                self._jobs.put(None)
                break
            jobs.append(job)
        with self._lock:
            self._running = len(jobs)
        return jobs

    def _run(self, jobs: list[_Job]) -> None:
        """One pass at the lowest threshold asked for; each request is then cut to its own. An
        image that fails gets its own error; the others their answers."""
        errors: dict[int, Exception] = {}
        with self._compute():
            found = predict(self.model, [j.image for j in jobs], batch_size=self.max_batch,
                            threshold=min(j.threshold for j in jobs),
                            on_error=lambda index, source, err: errors.__setitem__(index, err))
        self.images_done += len(jobs) - len(errors)
        for i, (job, det) in enumerate(zip(jobs, found)):
            self._finish(job, errors[i] if i in errors else det.select(job.threshold, job.top_k))

    def _finish(self, job: _Job, result) -> None:
        """Answer one request; it no longer counts in :attr:`depth` once its caller can see it."""
        with self._lock:
            self._running -= 1
        if isinstance(result, Exception):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    def _work(self) -> None:
        while (jobs := self._take()) is not None:
            try:
                self._run(jobs)
            except Exception:  # noqa: BLE001 - a batch failed: each request alone, so one cannot fail another
                for job in jobs:
                    if job.future.done():
                        continue
                    try:
                        self._run([job])
                    except Exception as err:  # noqa: BLE001 - handed to that request only
                        if not job.future.done():
                            self._finish(job, err)
            finally:
                with self._lock:
                    self._running = 0
                del jobs
                if self._jobs.empty():
                    release_free_memory()


__all__ = ["Batcher", "QueueFull"]
