"""What a training run leaves in its folder besides the training state: ``log.jsonl``, the
``metrics.png`` plot and the ``best``/``last`` model files, each written atomically."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import distributed as D
from ..checkpoint.native import save_native
from ..files import atomic_path, atomic_write_text


class RunLog:
    """log.jsonl writer (rank 0). On resume, lines past the checkpoint's step are dropped so
    the log reads as one uninterrupted run."""

    def __init__(self, out: Path, enabled: bool, resume_step: int | None, say=print):
        self.path = out / "log.jsonl"
        self.enabled = enabled
        self.last_plot = 0.0
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
        out = self.path.parent
        save_model_atomic(model, out / "last.safetensors")
        ap = val_stats["AP"] if val_stats else -1.0
        if val_stats is None or ap > best_ap or not (out / "best.safetensors").exists():
            if val_stats is not None:
                best_ap = max(best_ap, ap)
            save_model_atomic(model, out / "best.safetensors")
        if is_last or time.perf_counter() - self.last_plot > 30:
            plot_metrics(self.epochs(), out / "metrics.png")
            self.last_plot = time.perf_counter()
        msg = f"epoch {epoch}: loss {train_stats.get('loss', float('nan')):.4f}"
        if val_stats:
            msg += f", val AP {val_stats['AP']:.4f} AP50 {val_stats['AP50']:.4f}"
        say(msg)
        return best_ap

    def epochs(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [r for r in self._rows()[0] if r.get("type") == "epoch" and isinstance(r.get("train"), dict)]


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
