"""Batch prediction on the engines teams already run: Ray Data and Spark, with one definition.

Both engines want the same contract: a class that loads the model once in its constructor, and a
call that takes a batch (a dict of numpy arrays, or one array) and returns columns (a dict of
arrays, or an Arrow table, which Ray takes as well). :class:`BatchPredictor` is that class, and
returns an Arrow table with one schema for every batch; Ray Data calls it directly::

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
    out = ds.map_batches(BatchPredictor, fn_constructor_kwargs={"model": "hustvl/yolos-small"},
                         compute=ray.data.ActorPoolStrategy(size=2), batch_size=16, batch_format="numpy")
    out.write_parquet("s3://bucket/detections/")

and :func:`make_predict_fn` wraps it for Spark's ``pyspark.ml.functions.predict_batch_udf``, with
the row layout that function accepts (:func:`spark_return_type`)::

    detect = predict_batch_udf(make_predict_fn(model="bundled"), return_type=spark_return_type(),
                               batch_size=16)
    spark.read.format("binaryFile").load("photos/").select("path", detect("content").alias("found"))

A batch holds image bytes (Ray's ``bytes`` column, Spark's ``content``), paths (``path``) or decoded
``[H, W, C]`` arrays (Ray's ``read_images``: ``image``). Everything is :func:`yolos.predict`'s:
decoding with the EXIF rule, the resize, same-size batching, post-processing, category ids, and the
runtime (``runtime="auto"``, ``"onnxruntime"``, ...). One row per image, in input order; an image
that cannot be read gets its ``error`` (and no boxes), never a failed batch.
"""
from __future__ import annotations

import numpy as np

from . import defaults
from .api import load_model
from .export.engines import compile_for
from .inference.predictor import check_predict_options, predict

COLUMNS = ("boxes", "scores", "labels", "category_ids", "names", "width", "height", "error")
INPUT_COLUMNS = ("bytes", "content", "image", "path")  # what Ray's and Spark's readers call them


class BatchPredictor:
    """Ray Data's callable class (see the module doc). ``model``: what ``--model`` takes (None:
    the bundled model); ``column``: the input column (default: the first of :data:`INPUT_COLUMNS`
    the batch has); the other arguments are :func:`yolos.predict`'s and ``compile_for``'s."""

    def __init__(self, model: str | None = None, threshold: float = defaults.THRESHOLD, runtime: str = "torch",
                 dtype=None, short_side: int | None = None, long_side: int | None = None,
                 batch_size: int = defaults.MAX_BATCH, column: str | None = None, device=None, threads=None):
        import torch

        # options checked before the model loads, as the command does (one line naming the option)
        threshold, batch_size, _, short_side, long_side, dtype = check_predict_options(
            threshold, batch_size, None, short_side, long_side, dtype)
        if threads:
            torch.set_num_threads(threads)
        loaded, _ = load_model(model, device=device)
        self.network = compile_for(loaded, runtime, dtype)  # a low precision's weights cast once, here
        self.options = dict(threshold=threshold, short_side=short_side, long_side=long_side, batch_size=batch_size)
        self.column = column

    def __call__(self, batch):
        """A ``pyarrow.Table``: the batch's ``path`` (and any other non-image column), then
        :data:`COLUMNS` typed by :func:`arrow_schema`, one row per image, in input order. One
        schema for every batch, so that Parquet parts written by different actors read as one
        table (lists inferred per batch would be ``list<null>`` for a batch with no detections)."""
        import pyarrow as pa

        table = pa.Table.from_pylist([_arrow_row(r) for r in self.rows(sources_of(batch, self.column))],
                                     schema=arrow_schema())
        if hasattr(batch, "keys"):
            kept = [k for k in batch.keys() if k == "path" or k not in INPUT_COLUMNS and k != self.column]
            for i, name in enumerate(kept):
                table = table.add_column(i, name, pa.array(list(batch[name])))
        return table

    def rows(self, sources: list) -> list[dict]:
        """One dict per source: ``boxes [N, 4]`` float32 (xmin, ymin, xmax, ymax in original pixels),
        ``scores [N]``, ``labels [N]``, ``category_ids [N]``, ``names`` (N strings), ``width``,
        ``height``, ``error`` ("" when the image was read)."""
        errors: dict[int, str] = {}
        found = predict(self.network, sources, on_error=lambda i, s, e: errors.__setitem__(i, str(e)),
                        **self.options)
        return [_failed(errors[i]) if det is None else _row(det) for i, det in enumerate(found)]


def _row(det) -> dict:
    h, w = det.image_size
    return {"boxes": det.boxes.numpy().astype(np.float32).reshape(-1, 4),
            "scores": det.scores.numpy().astype(np.float32), "labels": det.labels.numpy().astype(np.int64),
            "category_ids": det.category_ids.numpy().astype(np.int64), "names": list(det.label_names),
            "width": int(w), "height": int(h), "error": ""}


def _failed(error: str) -> dict:
    return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, np.int64),
            "category_ids": np.zeros(0, np.int64), "names": [], "width": 0, "height": 0,
            "error": error}


def sources_of(batch, column: str | None = None) -> list:
    """The image sources of a batch: a column of bytes, paths or decoded arrays (see the module doc)."""
    if isinstance(batch, dict) or hasattr(batch, "keys"):
        name = column or next((c for c in INPUT_COLUMNS if c in batch), None)
        if name is None or name not in batch:
            there = ", ".join(map(str, batch.keys()))
            raise ValueError(f"the batch has no image column: give column= (it has {there}; looked for "
                             f"{', '.join(INPUT_COLUMNS)})")
        values = batch[name]
    else:
        values = batch
    return [_source(v) for v in list(values)]


def _source(value):
    """One image source: bytes, a path, or a decoded array (an object array of numbers, as a
    ragged column hands it, made numeric)."""
    if isinstance(value, (bytes, bytearray, memoryview, np.bytes_)):
        return bytes(value)
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, np.ndarray) and value.dtype == object:
        return np.array(value.tolist())
    return value


def arrow_schema():
    """The Arrow types of :data:`COLUMNS`: ``boxes`` a list of ``[x0, y0, x1, y1]`` float32 lists,
    ``scores`` float32, ``labels`` and ``category_ids`` int64, ``names`` string lists."""
    import pyarrow as pa

    return pa.schema([("boxes", pa.list_(pa.list_(pa.float32(), 4))), ("scores", pa.list_(pa.float32())),
                      ("labels", pa.list_(pa.int64())), ("category_ids", pa.list_(pa.int64())),
                      ("names", pa.list_(pa.string())), ("width", pa.int32()), ("height", pa.int32()),
                      ("error", pa.string())])


def _arrow_row(row: dict) -> dict:
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in row.items()}


def make_predict_fn(**kwargs):
    """A ``make_predict_fn`` for ``pyspark.ml.functions.predict_batch_udf``: loads a
    :class:`BatchPredictor` (``kwargs`` are its arguments) once per Python worker and predicts
    rows as Spark takes them: ``boxes`` flat (x0, y0, x1, y1, ...), the other arrays 1-D, one
    dict per image (:func:`spark_return_type` is the matching schema)."""
    def make():
        predictor = BatchPredictor(**kwargs)

        def predict_rows(inputs: np.ndarray) -> list[dict]:
            rows = predictor.rows(sources_of(inputs))
            return [dict(r, boxes=r["boxes"].reshape(-1), names=np.array(r["names"], dtype=str),
                         width=np.int32(r["width"]), height=np.int32(r["height"])) for r in rows]
        return predict_rows
    return make


def spark_return_type():
    """The Spark struct of one image's detections (what :func:`make_predict_fn` returns)."""
    from pyspark.sql.types import ArrayType, FloatType, IntegerType, LongType, StringType, StructField, StructType

    return StructType([
        StructField("boxes", ArrayType(FloatType())), StructField("scores", ArrayType(FloatType())),
        StructField("labels", ArrayType(LongType())), StructField("category_ids", ArrayType(LongType())),
        StructField("names", ArrayType(StringType())), StructField("width", IntegerType()),
        StructField("height", IntegerType()), StructField("error", StringType()),
    ])


__all__ = ["BatchPredictor", "make_predict_fn", "spark_return_type", "arrow_schema", "sources_of", "COLUMNS"]
