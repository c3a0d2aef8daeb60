"""Batch prediction on real local engines: Ray Data with two actors and a Spark session, over the 80
coco-val80 photos plus a corrupt one, giving exactly ``yolos predict``'s detections row by row."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

from yolos.cli import main
from yolos.scale import COLUMNS, BatchPredictor, arrow_schema, make_predict_fn

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """The coco-val80 photos (copied: the engines read one folder) and one corrupt file."""
    folder = tmp_path_factory.mktemp("photos")
    for f in sorted(shared_data("coco-val80", "val2017").glob("*.jpg")):
        shutil.copy(f, folder / f.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff this is no JPEG")
    return folder


@pytest.fixture(scope="module")
def expected(photos, tmp_path_factory) -> dict[str, dict | None]:
    """What the ``yolos predict`` command writes for each file (the bundled model, its defaults):
    its predictions.json record, or None for a file it reports as unreadable."""
    out = tmp_path_factory.mktemp("cli") / "predict"
    assert main(["predict", str(photos), "--no-images", "--out", str(out)]) == 1  # 1: an image was unreadable
    report = json.loads((out / "predictions.json").read_text())
    found = {Path(r["file"]).name: r for r in report["images"]}
    found.update({Path(r["file"]).name: None for r in report["failed"]})
    assert len(found) == 81 and found["broken.jpg"] is None
    assert sum(len(r["detections"]) > 0 for r in found.values() if r) >= 10
    return found


def _same(name: str, row, expected: dict) -> None:
    """One engine row (anything indexed by the column names) against the command's record: the
    same detections in the same order (the command rounds boxes to whole pixels)."""
    want, error = expected[name], row["error"]
    boxes, scores, names, category_ids = (row[c] for c in ("boxes", "scores", "names", "category_ids"))
    if want is None:
        assert error and "not a readable image" in error and len(boxes) == 0, (name, error)
        return
    assert error == "", (name, error)
    assert (row["width"], row["height"]) == (want["width"], want["height"]), name
    dets = want["detections"]
    box = [[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in dets]
    got = np.asarray([np.asarray(b, np.float32) for b in boxes], np.float32).reshape(-1, 4)  # nested or flat
    assert np.array_equal(np.trunc(got), np.reshape(box, (-1, 4))), name
    np.testing.assert_allclose(np.asarray(scores, np.float32), [d["score"] for d in dets], atol=1e-5)
    assert list(names) == [d["label"] for d in dets], name
    assert list(category_ids) == [d["category_id"] for d in dets], name


def test_the_callable_takes_bytes_paths_and_arrays(photos, expected):
    predictor = BatchPredictor()
    files = sorted(photos.iterdir())
    some = files[:6] + [photos / "broken.jpg"]
    for batch, names in (({"bytes": np.array([f.read_bytes() for f in files], dtype=object)}, files),
                         ({"path": np.array([str(f) for f in some])}, some), (np.array([str(f) for f in some]), some)):
        out = predictor(batch)
        assert out.schema.equals(arrow_schema()) if "path" not in batch else \
            out.column_names == ["path", *COLUMNS] and out.select(list(COLUMNS)).schema.equals(arrow_schema())
        assert out.num_rows == len(names)
        for f, row in zip(names, out.to_pylist()):
            _same(f.name, row, expected)
    from PIL import Image

    ragged = np.empty(1, dtype=object)  # as Ray hands images of different sizes
    ragged[0] = np.asarray(Image.open(files[0]).convert("RGB"))
    arrays = {"image": ragged}
    _same(files[0].name, predictor(arrays).to_pylist()[0], expected)
    with pytest.raises(ValueError, match="no image column"):
        predictor({"pixels": np.zeros(2)})
    with pytest.raises(ValueError, match="threshold"):
        BatchPredictor(threshold=1.5)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'yolos[ray]')")
def test_ray_data_with_two_actors(photos, expected, tmp_path):
    import ray

    # 4 logical CPUs on the 2 cores: the two actors hold one each, the file reads get the others
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        ds = ray.data.read_binary_files(str(photos), include_paths=True)
        found = ds.map_batches(BatchPredictor, fn_constructor_kwargs={"threads": 1}, compute=ray.data.ActorPoolStrategy(size=2), batch_size=4,
                               batch_format="numpy")
        found.write_parquet(str(tmp_path / "parquet"))  # where a real job's results go
        rows = ray.data.read_parquet(str(tmp_path / "parquet")).take_all()
    finally:
        ray.shutdown()
    assert sorted(Path(r["path"]).name for r in rows) == sorted(expected)
    for r in rows:
        _same(Path(r["path"]).name, r, expected)


@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None or shutil.which("java") is None,
                    reason="pyspark or a Java runtime is not installed (pip install 'yolos[spark]'; apt install "
                           "default-jre-headless)")
def test_spark_predict_batch_udf(photos, expected):
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import SparkSession

    from yolos.scale import spark_return_type

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[2]").appName("yolos-test").config("spark.ui.enabled", "false")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    try:
        detect = predict_batch_udf(make_predict_fn(threads=1), return_type=spark_return_type(), batch_size=4)
        df = spark.read.format("binaryFile").load(str(photos))
        rows = df.select("path", detect("content").alias("found")).collect()
    finally:
        spark.stop()
    assert sorted(Path(r["path"]).name for r in rows) == sorted(expected)
    for r in rows:
        _same(Path(r["path"]).name, r["found"], expected)


def _doc_blocks(heading: str) -> str:
    """The Python code under ``## heading`` of docs/scale.md, as a user copies it."""
    text = (Path(__file__).parents[1] / "docs" / "scale.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(part.split("```", 1)[0] for part in section.split("```python\n")[1:])


def _run_doc(code: str, cwd: Path) -> str:
    root = str(Path(__file__).parents[1])  # as installed (pip install -e .), also without the install
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYSPARK_PYTHON=sys.executable, PYTHONPATH=path)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def doc_folder(photos, tmp_path) -> Path:
    """A working folder with ``photos/``: six of the photos and the corrupt file."""
    (tmp_path / "photos").mkdir()
    for f in sorted(photos.iterdir())[:6] + [photos / "broken.jpg"]:
        shutil.copy(f, tmp_path / "photos" / f.name)
    return tmp_path


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'yolos[ray]')")
def test_the_ray_example_of_the_docs_runs_as_written(doc_folder, expected):
    printed = _run_doc(_doc_blocks("Ray Data") + "\n" + _doc_blocks("Reading the results"), doc_folder)
    import pandas as pd

    table = pd.read_parquet(doc_folder / "detections")
    assert sorted(Path(p).name for p in table.path) == sorted(f.name for f in (doc_folder / "photos").iterdir())
    for row in table.to_dict("records"):
        _same(Path(row["path"]).name, row, expected)
    assert "broken.jpg" in printed and "not a readable image" in printed  # the reading example's first print


@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None or shutil.which("java") is None,
                    reason="pyspark or a Java runtime is not installed (pip install 'yolos[spark]'; apt install "
                           "default-jre-headless)")
def test_the_spark_example_of_the_docs_runs_as_written(doc_folder, expected):
    _run_doc(_doc_blocks("Spark"), doc_folder)
    import pandas as pd

    table = pd.read_parquet(doc_folder / "detections-spark")
    assert len(table) == 7
    for path, found in zip(table.path, table.found):
        _same(Path(path).name, found, expected)


def test_importing_yolos_loads_no_engine():
    code = ("import sys, yolos, yolos.scale; "
            "print(sorted(m for m in ('ray', 'pyspark', 'pandas', 'pyarrow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
def test_the_callable_runs_an_exported_runtime(photos, expected, tmp_path, monkeypatch):
    """runtime= reaches compile_for: onnxruntime fp32 gives the command's detections (boxes to a
    pixel: the command truncates them; scores to 1e-4)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the export cache of this test alone
    predictor = BatchPredictor(runtime="onnxruntime", threads=1)
    assert predictor.network.runtime == "onnxruntime"
    files = sorted(photos.iterdir())[:8]
    for f, row in zip(files, predictor({"path": np.array([str(f) for f in files])}).to_pylist()):
        want = expected[f.name]
        if want is None:
            assert row["error"]
            continue
        dets = want["detections"]
        assert row["names"] == [d["label"] for d in dets], f.name
        np.testing.assert_allclose(row["scores"], [d["score"] for d in dets], atol=1e-4)
        box = np.reshape([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in dets], (-1, 4))
        assert np.abs(np.reshape(row["boxes"], (-1, 4)) - box).max(initial=0) < 1.01, f.name
