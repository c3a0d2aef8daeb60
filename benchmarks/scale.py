"""Batch prediction through Ray Data and Spark against ``yolos predict`` and the engines' callable
in one process, on the same cores and images: throughput (images/s) and each engine's overhead.

The images are the 80 coco-val80 photos (or ``--images DIR``); the model a checkpoint given with
``--model`` (default: ``--variant`` with random weights, written to a temporary file, so that the
model's time dominates as in a real job). Contenders, one after the other, each timed after an
untimed warm-up run:

* ``yolos predict``: the batch job the command runs (``yolos.inference.job.run_job``, JSON records,
  no annotated images), with all the machine's threads;
* in-process: ``yolos.scale.BatchPredictor`` over the files in batches (what an engine calls);
* Ray Data: ``read_binary_files`` -> ``map_batches(BatchPredictor, ActorPoolStrategy(size=N))`` -> Parquet,
  N actors with ``threads / N`` torch threads each;
* Spark: a ``local[N]`` session, ``binaryFile`` -> ``predict_batch_udf(make_predict_fn(...))`` ->
  Parquet.

    python -m benchmarks.scale --repeats 2                       # the 2-core CPU table
    python -m benchmarks.scale --device cuda --engines --batch 1 8 32 --variant yolos-s --dtype bfloat16
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import SHARED_DATA, environment
from yolos import create_model
from yolos.api import load_model
from yolos.inference.job import PredictJob, run_job
from yolos.scale import BatchPredictor, make_predict_fn, spark_return_type


def with_command(folder, model, batch, device, dtype, out):
    network, _ = load_model(model, device=device)

    def run():
        job = PredictJob([str(folder)], out=str(out / f"predict-{time.perf_counter_ns()}"), model_name=model,
                         batch_size=batch, dtype=dtype, images=False)
        run_job(network, job)
    return run


def in_process(files, model, threads, batch, device, dtype):
    predictor = BatchPredictor(model=model, threads=threads, batch_size=batch, device=device, dtype=dtype)

    def run():
        for i in range(0, len(files), batch):
            predictor({"bytes": [f.read_bytes() for f in files[i:i + batch]]})
    return run


def with_ray(folder, model, workers, threads, batch, out):
    import ray

    ray.init(num_cpus=2 * workers, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}})

    def run():
        target = out / f"ray-{time.perf_counter_ns()}"
        ds = ray.data.read_binary_files(str(folder), include_paths=True)
        ds.map_batches(BatchPredictor, fn_constructor_kwargs={"model": model, "threads": threads},
                       compute=ray.data.ActorPoolStrategy(size=workers), batch_size=batch,
                       batch_format="numpy").write_parquet(str(target))
    return run, ray.shutdown


def with_spark(folder, model, workers, threads, batch, out):
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master(f"local[{workers}]").config("spark.ui.enabled", "false")
             .config("spark.executorEnv.OMP_NUM_THREADS", str(threads)).getOrCreate())
    detect = predict_batch_udf(make_predict_fn(model=model, threads=threads), return_type=spark_return_type(),
                               batch_size=batch)

    def run():
        df = spark.read.format("binaryFile").load(str(folder))
        df.select("path", detect("content").alias("found")).write.parquet(str(out / f"spark-{time.perf_counter_ns()}"))
    return run, spark.stop


def timed(run, repeats: int) -> float:
    run()  # warm-up: actors or workers start, the model loads
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: --variant with random weights)")
    ap.add_argument("--variant", default="yolos-ti")
    ap.add_argument("--images", type=Path, default=SHARED_DATA / "coco-val80" / "val2017")
    ap.add_argument("--copies", type=int, default=1, help="each image this many times (a longer job)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="float32 (default) or bfloat16")
    ap.add_argument("--workers", type=int, default=2, help="Ray actors / Spark cores")
    ap.add_argument("--batch", type=int, nargs="+", default=[8], help="batch sizes, each its own table rows")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--engines", nargs="*", default=["ray", "spark"], choices=["ray", "spark"])
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    print(environment(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            model = str(tmp / f"{args.variant}-random.safetensors")
            create_model(args.variant).save(model)
        folder = tmp / "photos"  # one folder the engines read whole
        folder.mkdir()
        for f in sorted(args.images.glob("*.jpg")):
            for k in range(args.copies):
                shutil.copy(f, folder / f"{f.stem}-{k}{f.suffix}")
        files = sorted(folder.iterdir())
        for batch in args.batch:
            rate = {"yolos predict": len(files) / timed(with_command(folder, model, batch, args.device, args.dtype,
                                                                     tmp), args.repeats),
                    "in-process (BatchPredictor)": len(files) / timed(
                        in_process(files, model, threads, batch, args.device, args.dtype), args.repeats)}
            per_worker = max(1, threads // args.workers)
            for engine in args.engines:
                maker = with_ray if engine == "ray" else with_spark
                run, stop = maker(folder, model, args.workers, per_worker, batch, tmp)
                try:
                    rate[f"{engine} ({args.workers} workers x {per_worker} threads)"] = \
                        len(files) / timed(run, args.repeats)
                finally:
                    stop()
            base = rate["yolos predict"]
            rows += [{"batch": batch, "contender": k, "images_per_s": r, "vs_predict": r / base}
                     for k, r in rate.items()]
        print(f"\n{len(files)} images, {Path(model).name}, {args.device}, dtype {args.dtype or 'float32'}, "
              f"{threads} threads\n")
        print("| batch | contender | images/s | against yolos predict |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['batch']} | {r['contender']} | {r['images_per_s']:.2f} | {r['vs_predict']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"environment": environment(), "device": args.device, "model": args.variant
                                         if args.model is None else args.model, "dtype": args.dtype or "float32",
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
