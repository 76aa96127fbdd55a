"""facevid.udfs.restore / restore.faces: the alignment geometry, the selection rule, the learned
restorers loaded through spandrel from random-weight checkpoints, and the stage end to end on the
shared run's gold clips (enhance, and a learned architecture) with decodable files of the crop's
size, frame count, timestamps and audio."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from conftest import make_context, rows
from deltalake import DeltaTable
from fixtures_restore import restore_config, restore_context

from facevid.jobs.config import ConfigError, load_config
from facevid.jobs.runner import run_pipeline
from facevid.jobs.stages.silver.restore import RestoreFaces
from facevid.udfs.media.artifacts import marker_uri
from facevid.udfs.media.video import VideoSpan, to_array
from facevid.udfs.models.runtime import cuda_available, weights_hash
from facevid.udfs.restore.align import (
    FFHQ_512,
    five_points,
    paste_back,
    similarity,
    soft_mask,
    template,
    warp_face,
)
from facevid.udfs.restore.backends import SpandrelRestorer, check_weights, pick_dtype
from facevid.udfs.restore.clip import RESTORED_COLUMNS, prepare
from facevid.udfs.restore.landmarks import fit_crop
from facevid.udfs.restore.params import RestoreParams, Selection


def similarity_matrix(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


# ---- geometry -----------------------------------------------------------------------------------

def test_similarity_recovers_a_known_transform_and_five_points_follow_the_dlib_layout() -> None:
    rng = np.random.default_rng(3)
    for _ in range(6):
        m = similarity_matrix(rng.uniform(-0.5, 0.5), rng.uniform(0.3, 2.5), *rng.uniform(-80, 80, 2))
        placed = FFHQ_512 @ m[:, :2].T + m[:, 2]  # the template as it appears in some frame
        assert np.allclose(similarity(placed, FFHQ_512), cv2.invertAffineTransform(m), atol=1e-8)
        assert np.allclose(similarity(FFHQ_512, placed), m, atol=1e-8)
    pts = rng.uniform(0, 500, (68, 2))
    five = five_points(pts)
    assert np.allclose(five[0], pts[36:42].mean(0)) and np.allclose(five[1], pts[42:48].mean(0))
    assert np.allclose(five[2:], pts[[30, 48, 54]])
    assert np.allclose(template(256), FFHQ_512 / 2)


def test_a_face_warped_and_pasted_back_unchanged_round_trips_and_nothing_outside_the_mask_moves() -> None:
    rng = np.random.default_rng(5)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (360, 480, 3), dtype=np.uint8), (0, 0), 6)
    m = similarity(FFHQ_512 * 0.45 + (120, 30), template(256))  # a face at about the aligned scale
    face = warp_face(smooth, m, 256)
    back = paste_back(smooth, face, m, feather=0.05)
    inv = cv2.invertAffineTransform(m)
    alpha = cv2.warpAffine(soft_mask(256, 0.05), inv, (480, 360), flags=cv2.INTER_LINEAR)
    core, outside = alpha > 0.999, alpha == 0
    assert core.sum() > 10000 and outside.sum() > 10000
    assert np.abs(back[core].astype(int) - smooth[core]).mean() < 1.0  # interpolation only
    assert (back[outside] == smooth[outside]).all()

    noise = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
    white = paste_back(noise, np.full((256, 256, 3), 255, np.uint8), m, feather=0.05)
    changed = (white != noise).any(axis=2)
    assert changed.sum() > 10000 and not changed[outside].any()
    assert (white[core] == 255).all()


def test_select_is_all_or_a_declared_range_and_bad_params_are_rejected() -> None:
    sel = Selection.parse({"column": "sharpness_face", "max": 100})
    assert sel.decide({"sharpness_face": 39.14}) == (True, "selected: sharpness_face 39.14 <= max 100")
    assert sel.decide({"sharpness_face": 689.2}) == (False, "not selected: sharpness_face 689.2 > max 100")
    assert sel.decide({"sharpness_face": float("nan")}) == (False, "not selected: sharpness_face is null")
    assert Selection.parse({"column": "n_frames", "min": 10, "max": 20}).decide({"n_frames": 15})[0]
    assert Selection.parse("all").decide({}) == (True, "selected: all")
    for bad in ({"column": "x"}, {"max": 3}, "some", {"column": "x", "max": 1, "below": 2}):
        with pytest.raises(ValueError, match="select"):
            RestoreParams(select=bad)
    with pytest.raises(ValueError, match="model_path"):
        RestoreParams(backend="spandrel")
    with pytest.raises(ValueError, match="backend"):
        RestoreParams(backend="codeformer")
    assert pick_dtype("auto", "cuda", False, True) == "bfloat16" and pick_dtype("auto", "cuda", True, True) == "float16"
    assert pick_dtype("auto", "cpu", True, True) == "float32"
    with pytest.raises(ValueError, match="does not support float16"):
        pick_dtype("float16", "cuda", False, True)


# ---- learned restorers through spandrel ---------------------------------------------------------

@pytest.fixture(scope="module")
def aligned_face(gold_crops) -> np.ndarray:
    """The first frame of a real gold crop, its face aligned to the 512 template."""
    row = gold_crops[0]
    faces = fit_crop(row["crop_uri"], row, 64, None)
    with VideoSpan(row["crop_uri"]) as span:
        i = faces.usable[0]
        frame = next(to_array(f, "rgb24") for k, (_, f) in enumerate(span.frames()) if k == i)
    return warp_face(frame, similarity(five_points(faces.points[i]), template(512)))


def test_gfpgan_and_codeformer_load_through_spandrel_and_restore_a_real_face(restorer_weights, aligned_face) -> None:
    torch.set_num_threads(1)
    path = restorer_weights("gfpgan")
    gfpgan = SpandrelRestorer(str(path), "cpu")
    assert (gfpgan.arch, gfpgan.dtype, gfpgan.weights_hash) == ("GFPGAN", "float32", weights_hash(str(path)))
    two = gfpgan.restore(np.stack([aligned_face, aligned_face]))
    assert two.shape == (2, 512, 512, 3) and two.dtype == np.uint8
    assert (two[0] == two[1]).all() and not (two[0] == aligned_face).all()  # fixed noise: same face, same output

    path = str(restorer_weights("codeformer"))
    for refuse in (lambda: SpandrelRestorer(path, "cpu"), lambda: check_weights(path, False)):
        with pytest.raises(ValueError, match=r"stages\.restore\.params\.allow_noncommercial: CodeFormer is under the "
                                             r"S-Lab License"):
            refuse()
    assert check_weights(path, True) == "CodeFormer"
    outs = [SpandrelRestorer(path, "cpu", fidelity=w, allow_noncommercial=True).restore(aligned_face[None])[0]
            for w in (0.0, 1.0)]
    assert np.abs(outs[0].astype(int) - outs[1]).mean() > 1  # the fidelity weight reaches the model

    with pytest.raises(ValueError, match="holds a Compact model"):
        check_weights(str(restorer_weights("compact")), True)
    with pytest.raises(ValueError, match="face_size: GFPGAN needs"):
        SpandrelRestorer(str(restorer_weights("gfpgan")), "cpu", face_size=256)


def test_the_select_column_and_the_landmark_model_are_checked_before_any_work(tmp_path: Path) -> None:
    import pandas as pd

    cfg = load_config(restore_config(tmp_path, tmp_path / "lake", {"select": {"column": "iqa_x", "max": 1}}))
    spec, op = cfg.stages["restore"], RestoreFaces()
    frame = pd.DataFrame(columns=["clip_id", "video_id", "_input_fp", *op.requires])
    with pytest.raises(ConfigError, match="select reads iqa_x, which its input"):
        op.check_input(spec, frame)
    cfg = load_config(restore_config(tmp_path, tmp_path / "lake", {"landmarks_path": str(tmp_path / "x.dat")}))
    with pytest.raises(ConfigError, match=r"stages\.restore\.params\.landmarks_path"):
        op.preflight(cfg.stages["restore"])


def test_backend_none_and_unselected_clips_write_no_file_and_say_why(gold_crops, tmp_path: Path) -> None:
    row = gold_crops[0]
    off = prepare(row, RestoreParams(backend="none", select="all"), str(tmp_path))
    assert off.faces is None and off.done is not None  # nothing decoded
    assert (off.done["restored"], off.done["restored_uri"], off.done["restore_backend"]) == (False, None, "none")
    assert off.done["restore_reason"] == "backend none (restoration off); selected: all"
    assert off.done["frames_total"] == row["n_frames"] and set(off.done) == set(RESTORED_COLUMNS)
    skip = prepare(row, RestoreParams(select={"column": "sharpness_face", "max": row["sharpness_face"] - 1}),
                   str(tmp_path))
    assert skip.done["restored"] is False and skip.done["restore_reason"].startswith("not selected: sharpness_face")
    assert not any(tmp_path.iterdir())


def test_missing_weights_are_one_clear_error_naming_the_key(tmp_path: Path, capsys) -> None:
    from facevid.jobs.cli import main

    for params, message in [({"backend": "spandrel", "model_path": str(tmp_path / "nope.pth")}, "does not exist"),
                            ({"backend": "spandrel", "model_path": str(tmp_path)}, "is a folder, not a file")]:
        cfg = restore_config(tmp_path, tmp_path / "lake", params)
        assert main(["run", "--config", str(cfg), "--stages", "restore"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("facevid: error: stage restore: stages.restore.params.model_path:"), err
        assert message in err and len(err.splitlines()) == 1
        with pytest.raises(ConfigError, match=r"stages\.restore\.params\.model_path"):
            RestoreFaces().preflight(load_config(cfg).stages["restore"])
    assert not (tmp_path / "lake").exists()


# ---- the stage end to end -----------------------------------------------------------------------

def frame_pts(path: str) -> list[int]:
    with av.open(path) as c:
        return [f.pts for f in c.decode(video=0)]


def check_restored_file(uri: str, crop: dict) -> None:
    """Decodable, the crop's size, frame count, timestamps and audio."""
    assert Path(uri).is_file() and Path(marker_uri(uri)).is_file()
    with av.open(uri) as c, av.open(crop["crop_uri"]) as src:
        v = c.streams.video[0]
        assert (v.width, v.height) == (crop["crop_size"], crop["crop_size"])
        assert bool(c.streams.audio) == bool(crop["has_audio"]) == bool(src.streams.audio)
        if c.streams.audio:
            a, sa = c.streams.audio[0], src.streams.audio[0]
            assert a.rate == sa.rate and abs(float(a.duration * a.time_base) - float(sa.duration * sa.time_base)) < 0.05
    pts = frame_pts(uri)
    assert len(pts) == crop["n_frames"] and pts == frame_pts(crop["crop_uri"])


def restored_rows(ctx) -> list[dict]:
    return DeltaTable(ctx.lake.location("silver.restored")).to_pandas().to_dict("records")


def test_enhance_restores_the_soft_gold_clips_end_to_end_and_a_rerun_does_nothing(
        full_run, gold_crops, tmp_path: Path) -> None:
    # the defaults (enhance, sharpness_face <= 100) into a folder of this copy: a new `dir` re-runs every row
    # (full_run ran the declared stage into the shared lake's own folder)
    ctx = restore_context(full_run, tmp_path, {"dir": "restored_copy"})
    report = {r.stage: r for r in run_pipeline(ctx, names=["restore"], log=lambda m: None)}["restore"]
    out = {r["clip_id"]: r for r in restored_rows(ctx)}
    assert report.errors == 0 and not any(r["error"] for r in out.values())
    crops = {r["clip_id"]: r for r in gold_crops}
    soft = {c for c, r in crops.items() if r["sharpness_face"] <= 100}
    assert 0 < len(soft) < len(crops)  # the default threshold restores some gold clips, not all
    assert {c for c in crops if out[c]["restored"]} == soft
    level = RestoreParams().eye_level
    for clip_id, crop in crops.items():
        row = out[clip_id]
        assert row["restore_backend"] == "enhance" and row["frames_total"] == crop["n_frames"]
        if clip_id not in soft:
            assert row["restored_uri"] is None and row["restore_reason"].startswith("not selected: sharpness_face")
            continue
        assert row["restored_uri"].startswith(str(tmp_path / "lake" / "restored_copy" / clip_id) + "/")
        check_restored_file(row["restored_uri"], crop)
        assert row["restore_reason"].startswith("selected: sharpness_face") and row["restore_arch"] == "bilateral+unsharp"
        assert json.loads(row["restore_params"])["sharpen"] == 0.6 and row["restore_weights_hash"] is None
        assert row["frames_aligned"] >= 0.9 * row["frames_total"]
        assert row["sharpness_after"] > row["sharpness_before"] > 0
        assert abs(row["flicker_added"]) < 1.0  # luma levels per frame: enhancing adds no shimmer
        assert row["eye_flagged"] is False and row["eye_score"] < level
        assert len(json.loads(row["eye_detail"])["frames"]) == 4  # the first aligned frame + eye_frames 3
    assert rows(ctx, "SELECT count(*) AS n FROM silver_restored WHERE restored")[0]["n"] == \
        sum(r["restored"] for r in out.values())

    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "lake" / "restored_copy").rglob("*") if p.is_file()}
    again = {r.stage: r for r in run_pipeline(ctx, names=["restore"], log=lambda m: None)}["restore"]
    assert again.pending == 0 and again.commits == 0 and again.rows == report.rows
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "lake" / "restored_copy").rglob("*") if p.is_file()} == files

    # score, then decide: a new eye_level re-runs the rows but re-restores nothing
    strict = make_context(ctx.engine, restore_config(tmp_path, tmp_path / "lake", {"eye_level": 0.01,
                                                                                        "dir": "restored_copy"}),
                          [s.uri for s in ctx.cfg.sources])
    third = {r.stage: r for r in run_pipeline(strict, names=["restore"], log=lambda m: None)}["restore"]
    assert third.pending == len(out)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "lake" / "restored_copy").rglob("*") if p.is_file()} == files
    flagged = {r["clip_id"]: r for r in restored_rows(strict)}
    for clip_id in soft:
        assert flagged[clip_id]["eye_flagged"] is True and flagged[clip_id]["eye_score"] == out[clip_id]["eye_score"]
        assert json.loads(flagged[clip_id]["eye_detail"])["level"] == 0.01


def test_a_learned_architecture_restores_a_gold_clip_end_to_end_through_spandrel(
        full_run, gold_crops, restorer_weights, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    crop = gold_crops[0]  # the gold clip with the fewest frames
    value, path = crop["sharpness_face"], restorer_weights("restoreformer_tiny")
    params = {"backend": "spandrel", "model_path": str(path), "face_size": 128, "frame_batch": 8,
              "select": {"column": "sharpness_face", "min": value - 1e-3, "max": value + 1e-3}}
    ctx = restore_context(full_run, tmp_path, params)
    run_pipeline(ctx, names=["restore"], log=lambda m: None)
    out = [r for r in restored_rows(ctx) if r["restored"]]
    assert [r["clip_id"] for r in out] == [crop["clip_id"]]
    row = out[0]
    assert (row["restore_backend"], row["restore_arch"]) == ("spandrel", "RestoreFormer")
    assert row["restore_weights_hash"] == weights_hash(str(path))
    assert json.loads(row["restore_params"]) | {"dtype": "float32", "face_size": 128} == json.loads(row["restore_params"])
    check_restored_file(row["restored_uri"], crop)
    assert row["frames_aligned"] > 0 and row["eye_score"] is not None


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_gfpgan_and_codeformer_restore_every_gold_clip_on_cuda(full_run, gold_crops, restorer_weights,
                                                                tmp_path: Path) -> None:
    crops = {r["clip_id"]: r for r in gold_crops}
    for arch in ("gfpgan", "codeformer"):
        params = {"backend": "spandrel", "model_path": str(restorer_weights(arch)), "select": "all",
                  "allow_noncommercial": True, "frame_batch": 16}
        ctx = restore_context(full_run, tmp_path / arch, params, resources={"gpu": 1, "batch": 4})
        run_pipeline(ctx, names=["restore"], log=lambda m: None)
        out = {r["clip_id"]: r for r in restored_rows(ctx)}
        assert all(out[c]["restored"] for c in crops), {c: out[c]["restore_reason"] for c in crops}
        for clip_id, crop in crops.items():
            assert json.loads(out[clip_id]["restore_params"])["dtype"] == "bfloat16"  # spandrel: no fp16 for these
            check_restored_file(out[clip_id]["restored_uri"], crop)
        frames = sum(out[c]["frames_total"] for c in crops)
        seconds = sum(out[c]["restore_ms"] for c in crops) / 1000.0
        print(f"{arch} on cuda: {frames} frames in {seconds:.1f} s of row time = {frames / seconds:.1f} frames/s")


def test_hostile_crops_become_error_rows_and_the_rest_of_the_batch_completes(gold_crops, hostile_videos,
                                                                             tmp_path: Path) -> None:
    """Zero-byte, text and truncated files in place of a crop: error rows on their own clip (the batch
    op's row-by-row retry); a one-frame file is a correct row (its frame has no face where the track
    says: passed through, counted); a real gold crop in the same batch is restored."""
    spec = load_config(restore_config(tmp_path, tmp_path / "lake", {"select": "all"})).stages["restore"]
    op = RestoreFaces()
    op.root = str(tmp_path / "restored")
    good = gold_crops[0]
    records = [{**good, "clip_id": name, "crop_uri": str(hostile_videos[name])}
               for name in ("zero", "text", "truncated", "one_frame")] + [good]
    out = op.row_fn(spec)(records)
    assert [ok for ok, _ in out] == [False, False, False, True, True], out
    assert [e.category for _, e in out[:3]] == ["decode"] * 3  # quarantined as restore.decode, not a crash
    one = out[3][1]
    assert one["frames_total"] == 1 and one["frames_aligned"] == 0, one
    restored = out[-1][1]
    assert restored["restored"] is True and Path(restored["restored_uri"]).is_file()
