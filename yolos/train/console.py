"""What a training run shows while it runs.

On a terminal: one bar per epoch, ``epoch 3/100``, with the loss, the learning rate and the ETA
of the whole run. Anywhere else (a log file, a pipe, a job scheduler): plain lines, one every
:data:`LINE_EVERY_S` seconds, so that a 100-epoch run writes a short, readable log instead of
carriage-return bars.
"""
from __future__ import annotations

import sys
import time

LINE_EVERY_S = 30.0


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class StepReporter:
    """``start_epoch(epoch, steps, done)``, ``step(values, lr)`` after each optimizer step,
    ``end_epoch()``. ``total_steps``: the run's steps still to do when it starts (the ETA is
    their share left times the mean step time of this process); ``tty``: None asks stdout."""

    def __init__(self, epochs: int, total_steps: int, enabled: bool = True, tty: bool | None = None,
                 say=print, stream=None):
        self.epochs, self.left = epochs, max(total_steps, 0)
        self.enabled, self.say = enabled, say
        self.stream = stream or sys.stderr
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.started = time.perf_counter()
        self.done = 0
        self.bar = None
        self.last_line = self.started

    def eta(self) -> str:
        if not self.done:
            return "?"
        per_step = (time.perf_counter() - self.started) / self.done
        return _clock(per_step * (self.left - self.done))

    def start_epoch(self, epoch: int, steps: int, done: int = 0) -> None:
        self.epoch, self.steps, self.step_in_epoch = epoch, steps, done
        if self.enabled and self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=steps, initial=done, desc=f"epoch {epoch + 1}/{self.epochs}", dynamic_ncols=True,
                            leave=False, file=self.stream)

    def step(self, values: dict, lr: float) -> None:
        self.done += 1
        self.step_in_epoch += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"loss {values.get('loss', float('nan')):.3f}, lr {lr:.2e}, run ETA {self.eta()}")
        elif time.perf_counter() - self.last_line >= LINE_EVERY_S:
            self.last_line = time.perf_counter()
            self.say(f"epoch {self.epoch + 1}/{self.epochs} step {self.step_in_epoch}/{self.steps}: loss "
                     f"{values.get('loss', float('nan')):.4f}, lr {lr:.2e}, run ETA {self.eta()}")

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


__all__ = ["StepReporter"]
