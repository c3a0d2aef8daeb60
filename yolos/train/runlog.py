"""What a training run leaves in its folder besides the training state: ``log.jsonl``,
``results.csv`` (one row per epoch, rebuilt from the log so that a resumed run's file reads as
one run), the ``metrics.png`` plot, TensorBoard events (``tensorboard/``, when the package is
installed) and the ``best``/``last`` model files, each written atomically."""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import time
from pathlib import Path

from .. import distributed as D
from ..checkpoint.native import save_native
from ..files import atomic_path, atomic_write_text


class RunLog:
    """log.jsonl writer (rank 0). On resume, lines past the checkpoint's step are dropped so
    the log reads as one uninterrupted run."""

    def __init__(self, out: Path, enabled: bool, resume_step: int | None, say=print, tensorboard=None):
        self.path = out / "log.jsonl"
        self.enabled = enabled
        self.last_plot = 0.0
        self.board = _board(out, resume_step, tensorboard, say) if enabled else None
        if enabled and resume_step is not None and self.path.exists():
            rows, damaged = self._rows()
            if damaged:
                say(f"{self.path}: {damaged} damaged line(s) dropped (the log is informational; state.pt "
                    f"holds the run)")
            keep = [json.dumps(r) for r in rows if r.get("global_step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))
        elif enabled and resume_step is None and self.path.exists():
            self.path.unlink()

    def _rows(self) -> tuple[list[dict], int]:
        """The log's records and how many lines were not records (an edited or torn file)."""
        rows, damaged = [], 0
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                damaged += 1
                continue
            if isinstance(row, dict) and isinstance(row.get("global_step", 0), int):
                rows.append(row)
            else:
                damaged += 1
        return rows, damaged

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def end_epoch(self, model, epoch: int, global_step: int, train_stats: dict, val_stats: dict | None,
                  best_ap: float, is_last: bool, say) -> float:
        """The epoch's log line; on rank 0 also ``last.safetensors``, ``best.safetensors`` when
        the val AP improved (or there is no val), the plot (at most every 30 s: it costs ~1 s)
        and a one-line summary. Returns the best AP so far."""
        self.write({"type": "epoch", "epoch": epoch, "global_step": global_step,
                    "train": {k: round(v, 6) for k, v in train_stats.items()},
                    "val": val_stats, "time": time.time()})
        if not self.enabled:
            return best_ap
        self._to_board(global_step, train_stats, val_stats)
        out = self.path.parent
        save_model_atomic(model, out / "last.safetensors")
        ap = val_stats["AP"] if val_stats else -1.0
        if val_stats is None or ap > best_ap or not (out / "best.safetensors").exists():
            if val_stats is not None:
                best_ap = max(best_ap, ap)
            save_model_atomic(model, out / "best.safetensors")
        write_results_csv(self.epochs(), out / "results.csv")
        if is_last or time.perf_counter() - self.last_plot > 30:
            self.flush()
        msg = f"epoch {epoch}: loss {train_stats.get('loss', float('nan')):.4f}"
        if val_stats:
            msg += f", val AP {val_stats['AP']:.4f} AP50 {val_stats['AP50']:.4f}"
        say(msg)
        return best_ap

    def flush(self) -> None:
        """Bring metrics.png (and the TensorBoard file) up to the log: at the end and on an interrupt."""
        if not self.enabled:
            return
        plot_metrics(self.epochs(), self.path.parent / "metrics.png")
        self.last_plot = time.perf_counter()
        if self.board is not None:
            self.board.flush()

    def _to_board(self, step: int, train_stats: dict, val_stats: dict | None) -> None:
        if self.board is None:
            return
        for key, value in train_stats.items():
            self.board.add_scalar(f"train/{key}", value, step)
        for key in ("AP", "AP50", "AP75"):
            if val_stats and key in val_stats:
                self.board.add_scalar(f"val/{key}", val_stats[key], step)

    def epochs(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [r for r in self._rows()[0] if r.get("type") == "epoch" and isinstance(r.get("train"), dict)]


def _board(out: Path, resume_step: int | None, wanted: bool | None, say):
    """A TensorBoard writer in ``out/tensorboard`` (None: not wanted, or not installed; asked
    for by name, its absence is said once). A resumed run drops the events past its step."""
    if wanted is False:
        return None
    if importlib.util.find_spec("tensorboard") is None:
        if wanted:
            say("--tensorboard: the tensorboard package is not installed (pip install tensorboard); no events written")
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"), purge_step=resume_step)


RESULT_COLUMNS = ("epoch", "global_step", "time_s", "lr", "loss", "loss_ce", "loss_bbox", "loss_giou",
                  "AP", "AP50", "AP75", "AR100")


def write_results_csv(records: list[dict], path: Path) -> None:
    """results.csv: one row per epoch (losses, AP, AP50, AP75, AR100, lr, the epoch's seconds);
    an epoch without an evaluation leaves the AP columns empty."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for r in records:
        val, train = r.get("val") or {}, r["train"]
        row = {"epoch": r["epoch"], "global_step": r.get("global_step"), "time_s": train.get("time_s"), **train,
               **{k: val.get(k) for k in ("AP", "AP50", "AP75", "AR100")}}
        writer.writerow(["" if row.get(c) is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c])
                         for c in RESULT_COLUMNS])
    atomic_write_text(path, text.getvalue())


def plot_metrics(records: list[dict], path: Path) -> None:
    """metrics.png: losses, lr and val AP per epoch (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        return
    ep = [r["epoch"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key in ("loss", "loss_ce", "loss_bbox", "loss_giou"):
        axes[0].plot(ep, [r["train"].get(key, float("nan")) for r in records], label=key)
    axes[0].set_title("train loss")
    axes[0].legend()
    axes[1].plot(ep, [r["train"].get("lr", float("nan")) for r in records])
    axes[1].set_title("learning rate")
    for key in ("AP", "AP50", "AP75"):
        pts = [(r["epoch"], r["val"][key]) for r in records if r.get("val") and key in r["val"]]
        if pts:
            axes[2].plot(*zip(*pts), marker="o", label=key)
            axes[2].legend()
    axes[2].set_title("val AP")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def save_model_atomic(model, path: Path) -> None:
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_native(D.unwrap(model), tmp)
