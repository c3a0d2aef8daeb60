"""A batch prediction job: many images, annotated copies and one ``predictions.json``, that survives
a kill (``resume``) and spreads over the processes of ``torchrun``.

    from yolos.inference.job import PredictJob, run_job
    result = run_job(model, PredictJob(["photos/"], out="runs/predict", model_name="bundled"))

The job claims its folder (:mod:`yolos.run_dir`: a folder holding any file it would write goes to
``OUT2``), records what it is (a resumed job must be the same job), and each process takes images
``rank, rank + N, ...``, streams one JSON line per image to its own part
(:mod:`yolos.inference.records`) and, when asked, writes the annotated image first; process 0
merges the parts into ``predictions.json``. Unreadable images are recorded and skipped. Messages
go to ``say`` and progress to ``on_progress(done, total)``, never to print.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import defaults
from .. import distributed as D
from ..run_dir import run_dir
from .predictor import check_predict_options, iter_predict
from .records import RecordWriter, check_job, merge, read_records
from .sources import check_outputs, expand_sources, inside, output_names


@dataclass(frozen=True)
class PredictJob:
    """What a job reads, where it writes and with what settings. ``sources``: files, folders and
    globs (empty: the bundled example image); ``model_name`` and ``runtime`` are recorded, so a
    resumed job must name the same ones."""

    sources: list = field(default_factory=list)
    out: str = "runs/predict"
    model_name: str = "bundled"
    threshold: float = defaults.THRESHOLD
    batch_size: int = defaults.MAX_BATCH
    top_k: int | None = None
    short_side: int | None = None
    long_side: int | None = None
    dtype: object = None
    runtime: str = "torch"
    images: bool = True  # annotated copies besides predictions.json
    resume: bool = False

    def __post_init__(self):
        checked = check_predict_options(self.threshold, self.batch_size, self.top_k, self.short_side,
                                        self.long_side, self.dtype)
        for name, value in zip(("threshold", "batch_size", "top_k", "short_side", "long_side", "dtype"), checked):
            object.__setattr__(self, name, value)

    def settings(self) -> dict:
        """What makes two runs the same job (``records/job.json``)."""
        job = {"model": str(self.model_name), "threshold": self.threshold, "top_k": self.top_k,
               "short_side": self.short_side, "long_side": self.long_side,
               "dtype": None if self.dtype is None else str(self.dtype), "images": self.images}
        if self.runtime != "torch":  # jobs recorded before runtimes existed ran torch
            job["runtime"] = self.runtime
        return job


@dataclass
class Plan:
    """The files of a job, their output names and the sources that named nothing."""

    files: list
    names: list
    failed: list

    @classmethod
    def of(cls, job: PredictJob) -> Plan:
        pairs, failed = expand_sources(list(job.sources) or [str(defaults.DEFAULT_IMAGE)])
        names = output_names(pairs) if pairs else []
        check_outputs(Path(job.out), pairs, names, job.images)  # before loading or writing anything
        return cls([str(f) for f, _ in pairs], names, failed)


@dataclass
class JobResult:
    """Where the job wrote (``out``: ``OUT2`` when ``OUT`` was taken) and ``predictions.json``'s content."""

    out: Path
    report: dict


def run_job(network, job: PredictJob, say: Callable[[str], None] = lambda m: None,
            on_progress: Callable[[int, int], None] | None = None, plan: Plan | None = None) -> JobResult | None:
    """Run ``job`` with ``network`` (a model, or a network from ``compile_for``; under torchrun
    every process calls this with its own). Returns the :class:`JobResult` on process 0, None on
    the others."""
    plan = plan or Plan.of(job)
    files = ("predictions.json", "records") + (tuple(plan.names) if job.images else ())
    if D.is_dist() and D.dist.get_rank() != 0:  # process 0 claims the folder; the others follow it
        return _shard(network, job, Path(D.broadcast_object(None)), plan, say, on_progress)
    with run_dir(job.out, job.resume, run_files=files, say=say) as out:
        D.broadcast_object(str(out))
        return _shard(network, job, out, plan, say, on_progress)


def _shard(network, job: PredictJob, out: Path, plan: Plan, say, on_progress) -> JobResult | None:
    rank, world = (D.dist.get_rank(), D.dist.get_world_size()) if D.is_dist() else (0, 1)
    if rank == 0:
        check_job(out, job.settings(), job.resume)  # a resumed job must be the same job
    D.barrier()
    done = {f for f, r in read_records(out).items() if "error" not in r} if job.resume else set()
    mine = [i for i in range(rank, len(plan.files), world) if plan.files[i] not in done]
    if rank == 0:
        for source, reason in plan.failed:
            say(f"{source}: {reason}")
        if done:
            say(f"--resume: {len(done)} of {len(plan.files)} images already done")
    _predict_files(network, job, out, plan, mine, rank, say, on_progress)
    D.barrier()
    if rank != 0:
        return None
    report = merge(out, plan.files, job.settings(), unreadable=[{"file": s, "error": r} for s, r in plan.failed])
    return JobResult(out, report)


def _predict_files(network, job: PredictJob, out: Path, plan: Plan, mine: list[int], rank: int, say,
                   on_progress) -> None:
    """This process's images: one record each (the annotated image written before its record)."""
    progress = [0]

    def advance() -> None:
        progress[0] += 1
        if on_progress is not None:
            on_progress(progress[0], len(mine))

    with RecordWriter(out, rank) as writer:
        def on_error(index, source, err) -> None:
            say(f"skipped {err}")
            writer.write({"file": plan.files[mine[index]], "error": str(err)})
            advance()

        options = {k: getattr(job, k) for k in ("threshold", "batch_size", "top_k", "short_side", "long_side",
                                                 "dtype")}
        for index, det in iter_predict(network, [plan.files[i] for i in mine], on_error=on_error, **options):
            i = mine[index]
            entries = det.to_dict()
            for entry, category in zip(entries, det.category_ids.tolist()):
                entry["category_id"] = category  # the dataset's own id (COCO checkpoints: COCO's)
            h, w = det.image_size
            record = {"file": plan.files[i], "width": w, "height": h, "detections": entries}
            if job.images:  # the image first: a record always means its image is there
                det.save(inside(out, plan.names[i]))
                record["annotated"] = plan.names[i]
            writer.write(record)
            advance()


__all__ = ["PredictJob", "Plan", "JobResult", "run_job"]
