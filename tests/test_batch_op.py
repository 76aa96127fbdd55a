"""A ``BatchOp`` through the engine with a tiny random-weight torch model: batches of
``resources.batch``, one model per process, exactly one result per row, errors on their row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ops_for_tests
import pytest
import yaml
from conftest import make_context

from facevid.jobs.runner import run_pipeline
from facevid.udfs.models import runtime

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.spark]


def config(tmp: Path, params: dict, resources: dict) -> Path:
    doc = {"lake": str(tmp / "lake"), "plugins": ["ops_for_tests"], "stages": {
        "rows": {"udf": "test.rows", "params": {"rows": 50, "clips_per_video": 5}},
        "score": {"udf": "test.torch_score", "params": params, "resources": resources}}}
    path = tmp / "pipeline.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def expected(ctx, seed: int, device: str = "cpu") -> dict[str, float]:
    net = ops_for_tests.TinyNet(seed, device)
    tracks = ctx.current("test.tracks").select("clip_id", "track_boxes").toPandas()
    x = torch.from_numpy(np.stack([np.stack(b).astype(np.float32).mean(axis=0) for b in tracks["track_boxes"]]))
    return dict(zip(tracks["clip_id"], net(x).tolist(), strict=True))


def test_batches_one_model_per_process_and_errors_on_their_rows(engine, tmp_path: Path) -> None:
    params = {"seed": 11, "fail_on": "clip0000007", "nan_on": "clip0000031"}
    ctx = make_context(engine, config(tmp_path, params, {"batch": 8, "partitions": 2}), [])
    report = {r.stage: r for r in run_pipeline(ctx, log=lambda m: None)}["score"]
    assert report.pending == 50 and report.errors == 2
    out = ctx.current("test.scores").toPandas().set_index("clip_id")
    assert len(out) == 50 and out.index.is_unique
    assert out.loc["clip0000007", "error"] == "io: OSError: prepare failed"
    assert out.loc["clip0000031", "error"] == "bug: ValueError: NaN in the batch"
    good = out[out["error"].isna()]
    want = expected(ctx, 11)
    assert np.allclose(good["score"], [want[c] for c in good.index], atol=1e-6)
    assert set(good["device"]) == {"cpu"}
    keys = [k for k in runtime.loaded_models() if k[:2] == ("test.torch_score", 11)]
    assert keys == [("test.torch_score", 11, "cpu")]  # one model for both partitions' tasks
    model, _ = runtime.shared_model(keys[0], lambda: None)
    assert max(model.calls) == 8 and min(model.calls) >= 1  # batches of resources.batch (a failing batch
    assert sum(model.calls) == 48  # is retried row by row): every good row is inferred once


@pytest.mark.gpu
def test_the_model_runs_on_cuda_when_a_gpu_share_is_declared(engine, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ctx = make_context(engine, config(tmp_path, {"seed": 5}, {"batch": 16, "gpu": 0.5}), [])
    run_pipeline(ctx, log=lambda m: None)
    out = ctx.current("test.scores").toPandas()
    assert set(out["device"]) == {"cuda"} and out["error"].isna().all()
    want = expected(ctx, 5, "cuda")
    assert np.allclose(out["score"], [want[c] for c in out["clip_id"]], atol=1e-4)


def test_threads_asking_at_once_share_one_build() -> None:
    import threading
    import time

    calls = []

    def build() -> object:
        calls.append(1)
        time.sleep(0.2)
        return object()

    key = ("test.concurrent", id(calls))
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(runtime.shared_model(key, build)[0])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(m) for m in got}) == 1
