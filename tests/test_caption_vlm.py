"""The ``vlm`` caption backend through the engine: a tiny random-weight VLM of each supported family,
built offline (``tests/tiny_vlm.py``), loaded by the production path from its folder, run by the
caption stage on the real crops of the shared ``full_run`` lake (batches of real frames, the real
processor, chat template and left-padded ``generate``). Random weights answer garbage, so the
answer is forced with ``forced_answer`` (constrained decoding inside the real ``generate``): what
lands in ``silver.captions`` is that answer parsed into vocabulary terms."""

from __future__ import annotations

import json

import pytest
from conftest import copy_lake, rows
from tiny_vlm import FAMILIES

from facevid.jobs.runner import run_pipeline
from facevid.udfs.models.runtime import cuda_available

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

ANSWER = json.dumps({"ethnicity": "caucasian", "appearance": ["male", "glasses", "beard"], "lighting": ["bright"],
                     "action": ["talking", "nodding"], "emotion": "happy",
                     "caption": "A man with glasses talks and nods."})


def vlm_stage(model, **params) -> dict:
    return {"caption": {"input": ["silver.crops"], "resources": {"batch": 4},
                        "params": {"backend": "vlm", "model_path": str(model), "max_new_tokens": 96,
                                   "frame_side": 112, "forced_answer": ANSWER, **params}}}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_captions_real_crops_through_the_engine(full_run, tiny_vlms, tmp_path, family: str) -> None:
    base, _ = full_run
    ctx = copy_lake(base, tmp_path, vlm_stage(tiny_vlms(family)))
    (report,) = run_pipeline(ctx, ["caption"], log=lambda m: None)
    crops = rows(ctx, "SELECT count(*) AS n FROM silver_crops WHERE error IS NULL")[0]["n"]
    caps = rows(ctx, "SELECT * FROM silver_captions")
    assert report.errors == 0 and len(caps) == crops >= 8
    for r in caps:
        assert r["raw_answer"] == ANSWER and r["parse_method"] == "json"
        assert (r["ethnicity"], r["emotion"]) == ("White", "Happy")
        assert list(r["appearance"]) == ["Male", "Eyeglasses"] and list(r["action"]) == ["Talk", "Nod"]
        assert list(r["lighting"]) == ["Bright"] and list(r["oov"]) == ["appearance: beard (not an option)"]
        assert r["caption"] == "A man with glasses talks and nods."
        assert r["backend"] == "vlm" and f"({family})" in r["model"] and "@" in r["model"]
        assert r["prompt_version"].startswith("v1-") and len(r["frames"]) == 4 and r["frames"][0] == 0.0


def test_an_answer_that_does_not_parse_is_a_transient_error_row_then_retried(full_run, tiny_vlms, tmp_path) -> None:
    base, _ = full_run
    model = tiny_vlms("qwen2_5_vl")
    ctx = copy_lake(base, tmp_path, vlm_stage(model, forced_answer="{}"))
    run_pipeline(ctx, ["caption"], log=lambda m: None)
    bad = rows(ctx, "SELECT error, error_kind, raw_answer FROM silver_captions")
    assert bad and all(r["error"].startswith("parse:") and r["error_kind"] == "transient" for r in bad)
    assert {r["rule"] for r in rows(ctx, "SELECT rule FROM quarantine WHERE stage = 'caption'")} == {"caption.parse"}
    fixed = copy_lake(ctx, tmp_path / "again", vlm_stage(model))
    run_pipeline(fixed, ["caption"], log=lambda m: None)
    assert all(r["error"] is None and r["emotion"] == "Happy" for r in rows(fixed, "SELECT * FROM silver_captions"))


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")  # before the full_run fixture builds
def test_the_vlm_backend_runs_on_cuda_with_a_gpu_share(full_run, tiny_vlms, tmp_path) -> None:
    """With ``resources.gpu`` > 0 and a visible CUDA device the caption model runs on the GPU (one
    model per executor process) and gives the same parsed answers."""
    from facevid.udfs.models.runtime import loaded_models

    base, _ = full_run
    stages = vlm_stage(tiny_vlms("qwen2_5_vl"))
    stages["caption"]["resources"]["gpu"] = 1
    ctx = copy_lake(base, tmp_path, stages)
    (report,) = run_pipeline(ctx, ["caption"], log=lambda m: None)
    caps = rows(ctx, "SELECT * FROM silver_captions")
    assert report.errors == 0 and caps and all(r["emotion"] == "Happy" for r in caps)
    assert any(k[0] == "caption.vlm" and "cuda" in str(k) for k in loaded_models())
