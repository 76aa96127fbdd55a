"""facevid.udfs.face.crops / crops.write: the box rule, real encoded crops (face inside, audio kept), the
min_crop_px rule, hostile input, one engine run and one S3 round trip."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from conftest import make_context, rows, write_config
from synth_video import make_garbled_video, make_timed_video

import facevid.jobs.stages.silver.crops  # noqa: F401  (registers crops.write)
from facevid.udfs.base import StageError
from facevid.udfs.face.crops import CropParams, crop_square, crops_row, plan_crop
from facevid.udfs.face.faces import FacesParams, detect_clip
from facevid.udfs.media.artifacts import marker_uri
from facevid.udfs.media.encode import _Writer, coded_square, encode_crop
from facevid.udfs.media.video import upright
from facevid.udfs.models.detectors import get_detector

# file, start_s, end_s (None = to the end): a clip with an odd frame rate, an mpeg4 source with
# 16 kHz audio, and a clip from the middle of a video (seek, audio trimmed in sync)
CLIPS = [("retalking_face1", 0.0, None), ("sadtalker_aoc", 0.0, 4.0), ("lp_d18", 2.0, 5.5)]


def faces_row(videos: Path, name: str, start: float = 0.0, end: float | None = None) -> dict:
    """What the crops stage reads: a silver.faces row joined with its clip."""
    uri = str(videos / f"{name}.mp4")
    face = detect_clip(uri, start, end, FacesParams())
    return {**face, "clip_id": name, "video_id": name, "video_uri": uri, "start_s": start, "end_s": end}


# ---- the box rule -------------------------------------------------------------------------------

def test_square_is_centred_below_the_face_with_expand_times_the_largest_side() -> None:
    boxes = [[400, 300, 100, 120]] * 4 + [[410, 300, 100, 140]]  # max side 140, median 120
    x, y, side = crop_square(boxes, 1000, 800, expand=2.0, shift_down=0.1)
    assert side == 280
    assert (x, y) == (round(450 - 140), round(360 + 12 - 140))  # median centre (450, 360) + 0.1 x 120


def test_square_is_shifted_inside_the_frame_and_shrunk_to_the_short_side() -> None:
    assert crop_square([[0, 0, 80, 80]], 640, 480) == (0, 0, 160)  # top-left corner
    assert crop_square([[600, 440, 40, 40]], 640, 480) == (560, 400, 80)  # bottom-right corner
    x, y, side = crop_square([[200, 100, 300, 300]], 700, 500)  # 2 x 300 > short side 500
    assert (side, y) == (500, 0) and 0 <= x <= 200
    assert crop_square(np.array([np.array([10.0, 10.0, 3.0, 3.0])], dtype=object), 5, 7)[2] == 4  # even side


def test_min_crop_px_and_no_face_are_errors() -> None:
    params = CropParams()
    small = {"track_boxes": [[300, 200, 100, 100]], "frame_width": 720, "frame_height": 1080}
    with pytest.raises(StageError) as err:
        plan_crop(small, params)
    assert (err.value.category, err.value.detail) == ("min_crop_px", "200")
    assert plan_crop(small, CropParams(min_crop_px=200)) == (250, 160, 200)
    for boxes in ([], None, [[np.nan, 1, 2, 3]]):
        with pytest.raises(StageError, match="no_face"):
            plan_crop({"track_boxes": boxes, "frame_width": 720, "frame_height": 1080}, params)


def test_params_and_folders() -> None:
    for bad in ({"size": 511}, {"expand": 0.5}, {"crf": 60}, {"preset": "warp"}, {"min_crop_px": 0}):
        with pytest.raises(ValueError, match="crops"):
            CropParams(**bad)
    # where the folder goes is the config's files root (PipelineConfig.file_uri, tests/test_config.py)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270, -90])
def test_coded_square_cuts_the_same_pixels_as_the_upright_frame(rotation: int) -> None:
    coded = np.arange(97 * 61, dtype=np.int32).reshape(61, 97)  # odd sizes
    up = upright(coded, rotation)
    box = (21, 33, 20)
    (cx, cy, s), (ux, uy, _) = coded_square(box, rotation, 97, 61)
    assert cx % 2 == 0 and cy % 2 == 0 and abs(ux - box[0]) <= 1 and abs(uy - box[1]) <= 1
    assert np.array_equal(upright(coded[cy:cy + s, cx:cx + s], rotation), up[uy:uy + s, ux:ux + s])


# ---- real clips -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoded(shared_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    root = str(tmp_path_factory.mktemp("crops"))
    out = {}
    for name, start, end in CLIPS:
        row = faces_row(shared_videos, name, start, end)
        out[name] = (row, crops_row(row, CropParams(), root))
    return out


def source_audio(path: str) -> bool:
    with av.open(path) as c:
        return bool(c.streams.audio)


def test_crops_are_512_h264_with_the_clip_timing_and_its_audio(encoded: dict) -> None:
    for name, start, end in CLIPS:
        row, res = encoded[name]
        with av.open(row["video_uri"]) as src:
            vs = src.streams.video[0]
            fps, duration = float(vs.average_rate), (end or float(vs.duration * vs.time_base)) - start
        assert re.fullmatch(rf".*/{name}/[0-9a-f]{{20}}\.mp4", res["crop_uri"])
        assert Path(res["crop_uri"]).stat().st_size == res["crop_bytes"]
        assert res["crop_side"] >= 256 and res["upscale"] == pytest.approx(512 / res["crop_side"])
        assert abs(res["n_frames"] - duration * fps) <= 2
        assert start - 1e-6 <= res["t_first"] < start + 1 / fps
        assert res["t_last"] - res["t_first"] == pytest.approx((res["n_frames"] - 1) / fps, abs=0.5 / fps)
        with av.open(res["crop_uri"]) as c:
            v = c.streams.video[0]
            assert (v.codec_context.name, v.width, v.height, v.format.name) == ("h264", 512, 512, "yuv420p")
            assert sum(1 for _ in c.decode(v)) == res["n_frames"]
            assert bool(c.streams.audio) == source_audio(row["video_uri"]) == res["has_audio"]
            if c.streams.audio:
                a = c.streams.audio[0]
                assert a.codec_context.name == "aac"
                assert abs(float(a.duration * a.time_base) - duration) < 0.15, name
        assert list(Path(res["crop_uri"]).parents[1].rglob(".*")) == []  # no temporary file left


def test_the_face_is_inside_every_sampled_crop_frame(encoded: dict) -> None:
    det = get_detector("mtcnn", None, 0.9, "cpu")
    for name, _, _ in CLIPS:
        _, res = encoded[name]
        with av.open(res["crop_uri"]) as c:
            frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
        for frame in frames[:: max(1, len(frames) // 5)][:5]:
            boxes, _, _ = det.detect(frame)
            assert len(boxes) == 1, (name, len(boxes))
            x, y, w, h = boxes[0]
            assert x > 8 and y > 8 and x + w < 504 and y + h < 504, (name, boxes[0])
            assert max(w, h) > 90, (name, boxes[0])  # a face of ~512 / expand pixels, not a tiny one


def mono16k(path: str) -> tuple[float, np.ndarray]:
    """The first audio stream as 16 kHz mono: (absolute time of the first sample, samples)."""
    with av.open(path) as c:
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
        first, chunks = None, []
        for frame in c.decode(audio=0):
            for out in resampler.resample(frame):
                first = float(out.pts * out.time_base) if first is None else first
                chunks.append(out.to_ndarray()[0])
    return first, np.concatenate(chunks)


def test_audio_is_cut_in_sync_with_the_video(shared_videos: Path, tmp_path: Path) -> None:
    path = str(shared_videos / "hamilton_short.mp4")  # video starts 0.85 s after the audio in the file
    enc = encode_crop(path, 3.0, 6.0, (0, 0, 120), 64, str(tmp_path / "h.mp4"))
    with av.open(path) as c:
        v = c.streams.video[0]
        v0 = float(v.start_time * v.time_base)
    src_first, src = mono16k(path)
    out_first, out = mono16k(str(tmp_path / "h.mp4"))
    assert abs(out_first) < 1e-3 and abs(len(out) / 16000 - enc["n_frames"] / enc["fps"]) < 0.03
    at = round((v0 + enc["t_first"] - src_first) * 16000)  # where the crop's first sample is in the source
    probe = out[4000:20000]
    lags = range(-400, 401)
    corr = [float(np.dot(probe, src[at + 4000 + k:at + 20000 + k])) for k in lags]
    lag = lags[int(np.argmax(corr))]
    assert abs(lag) <= 16, lag  # within 1 ms
    assert max(corr) > 0.9 * float(np.dot(probe, probe))


def test_small_face_is_an_error_row_and_no_file(shared_videos: Path, tmp_path: Path) -> None:
    row = faces_row(shared_videos, "lp_s13")  # full body, face ~73 px in 720x1080
    earlier = tmp_path / "lp_s13" / "0123456789abcdef0123.mp4"
    earlier.parent.mkdir()
    earlier.write_bytes(b"published by an earlier run")
    with pytest.raises(StageError) as err:
        crops_row(row, CropParams(), str(tmp_path))
    assert err.value.category == "min_crop_px" and int(err.value.detail) < 256
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [earlier]  # a failing row deletes nothing
    assert earlier.read_bytes() == b"published by an earlier run"


def hostile_row(files: dict[str, Path], name: str, width: int = 160, height: int = 120) -> dict:
    return {"clip_id": name, "video_uri": str(files[name]), "start_s": 0.0, "end_s": None,
            "track_boxes": [[40, 30, 40, 40]], "frame_width": width, "frame_height": height}


def test_undecodable_video_is_a_decode_error_and_no_file(hostile_videos: dict[str, Path], tmp_path: Path) -> None:
    files = {**hostile_videos, "garbled": make_garbled_video(tmp_path / "garbled.mp4")}
    out = tmp_path / "crops"
    for name in ("zero", "text", "audio", "truncated", "garbled"):
        with pytest.raises(StageError, match="decode"):
            crops_row(hostile_row(files, name), CropParams(min_crop_px=16, size=64), str(out))
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(("name", "size", "frames", "audio"), [
    ("one_frame", (160, 120), 1, False), ("odd", (161, 97), 25, False), ("tiny_talk", (160, 120), 50, True)])
def test_odd_short_and_talking_synthetic_videos_are_ordinary_rows(
        hostile_videos: dict[str, Path], tmp_path: Path, name: str, size: tuple, frames: int, audio: bool) -> None:
    res = crops_row(hostile_row(hostile_videos, name, *size), CropParams(min_crop_px=16, size=64), str(tmp_path))
    assert (res["n_frames"], res["has_audio"], res["crop_side"]) == (frames, audio, 80)
    with av.open(res["crop_uri"]) as c:
        assert (c.streams.video[0].width, sum(1 for _ in c.decode(video=0))) == (64, frames)


def test_rotated_video_crop_matches_the_upright_frame(hostile_videos: dict[str, Path], tmp_path: Path) -> None:
    path = str(hostile_videos["rotated"])  # 160x96 coded, displayed 96x160
    out = str(tmp_path / "r.mp4")
    enc = encode_crop(path, 0.0, None, (20, 50, 64), 64, out, crf=0)  # lossless, no resize
    x, y, s = enc["box"]
    with av.open(path) as c:
        ref = [upright(f.to_ndarray(format="yuv420p")[:96], f.rotation)[y:y + s, x:x + s] for f in c.decode(video=0)]
    with av.open(out) as c:
        got = [f.to_ndarray(format="yuv420p")[:64] for f in c.decode(video=0)]
    assert len(got) == len(ref) == enc["n_frames"] == 25 and not enc["has_audio"]
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))


# ---- frame times of VFR and offset streams --------------------------------------------------------

def decoded_times(path: str) -> list[float]:
    with av.open(path) as c:
        s = c.streams.video[0]
        origin = s.start_time or 0
        return sorted(float((f.pts - origin) * s.time_base) for f in c.decode(s))


@pytest.mark.parametrize("kind", ["vfr", "offset"])
def test_written_frames_are_recorded_by_their_times(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(3)
    times = (np.concatenate([[0.0], np.cumsum(rng.uniform(0.012, 0.09, 70))]) if kind == "vfr"
             else 2.5 + np.arange(75) / 25)  # a stream whose first frame is 2.5 s into the file
    path = make_timed_video(tmp_path / f"{kind}.mp4", times, audio=kind == "offset")
    src = decoded_times(str(path))
    start, end = src[20] - 0.003, src[50]  # mid-GOP, the end exactly on a frame time
    row = {"clip_id": kind, "video_id": kind, "video_uri": str(path), "start_s": start, "end_s": end,
           "track_boxes": [[40, 30, 40, 40]], "frame_width": 160, "frame_height": 120}
    res = crops_row(row, CropParams(min_crop_px=16, size=64), str(tmp_path / "crops"))
    assert (res["t_first"], res["t_last"], res["n_frames"]) == (src[20], src[49], 30)
    assert "frame_start" not in res and "frame_end" not in res
    written = [res["t_first"] + t for t in decoded_times(res["crop_uri"])]
    assert np.allclose(written, src[20:50], atol=1e-4)  # the crop keeps the source's irregular steps
    assert res["has_audio"] is (kind == "offset")


# ---- immutable files ------------------------------------------------------------------------------

@pytest.fixture
def talk(hostile_videos: dict[str, Path]) -> dict:
    return {**hostile_row(hostile_videos, "tiny_talk"), "video_id": "v_tiny", "end_s": 1.2}


SMALL = CropParams(min_crop_px=16, size=64)


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_inputs_reuse_the_file_and_new_inputs_get_a_new_one(talk: dict, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "crops"
    first = crops_row(talk, SMALL, str(root))
    assert re.fullmatch(rf"{re.escape(str(root))}/tiny_talk/[0-9a-f]{{20}}\.mp4", first["crop_uri"])
    before = files_under(root)
    assert sorted(before) == [f"tiny_talk/{Path(first['crop_uri']).stem}.{ext}" for ext in ("json", "mp4")]

    def no_encode(*args, **kwargs):
        raise AssertionError("a complete file of the same digest must be reused")

    monkeypatch.setattr("facevid.udfs.face.crops.encode_crop", no_encode)
    assert crops_row(talk, SMALL, str(root)) == first  # the re-run targets the same path, skips the work
    monkeypatch.undo()
    assert files_under(root) == before
    others = [crops_row(talk, CropParams(min_crop_px=16, size=64, crf=30), str(root)),  # encoder setting
              crops_row({**talk, "end_s": 1.0}, SMALL, str(root)),  # the clip span
              crops_row({**talk, "track_boxes": [[44, 30, 40, 40]]}, SMALL, str(root)),  # the track
              crops_row({**talk, "video_id": "v_other"}, SMALL, str(root))]  # the source content
    uris = {first["crop_uri"]} | {o["crop_uri"] for o in others}
    assert len(uris) == 5 and all(Path(u).is_file() for u in uris)
    assert {k: v for k, v in files_under(root).items() if k in before} == before


def failing_writer(monkeypatch, after: int = 5) -> None:
    """libx264 writes real partial output, then the attempt dies mid-clip."""
    write = _Writer.write

    def write_then_fail(self, frame):
        if self.n == after:
            self.out.mux(self.video.encode())  # flush what is encoded so far into the partial file
            raise StageError("encode", "simulated failure mid-clip")
        write(self, frame)

    monkeypatch.setattr(_Writer, "write", write_then_fail)


def test_a_failing_attempt_never_deletes_or_overwrites_a_published_file(
        talk: dict, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "crops"
    first = crops_row(talk, SMALL, str(root))
    published = Path(first["crop_uri"])
    before = files_under(root)
    Path(marker_uri(first["crop_uri"])).unlink()  # as if the first attempt died before its marker
    failing_writer(monkeypatch)
    for row, params in ((talk, SMALL), ({**talk, "end_s": 1.0}, SMALL)):  # same path, and a new path
        with pytest.raises(StageError, match="simulated"):
            crops_row(row, params, str(root))
    assert files_under(root) == {k: v for k, v in before.items() if not k.endswith(".json")}
    assert published.read_bytes() == before[published.relative_to(root).as_posix()]
    monkeypatch.undo()
    again = crops_row(talk, SMALL, str(root))  # the published file is adopted, never rewritten
    assert again == {**first, "encode_ms": again["encode_ms"]}
    assert sorted(files_under(root)) == sorted(before) and published.read_bytes() == before[
        published.relative_to(root).as_posix()]


def test_a_killed_attempt_leaves_only_a_hidden_part_file_that_the_sweep_takes(
        talk: dict, tmp_path: Path, monkeypatch) -> None:
    from facevid.udfs.media.artifacts import sweep

    root = tmp_path / "crops"
    failing_writer(monkeypatch)
    monkeypatch.setattr("os.unlink", lambda path: None)  # SIGKILL: no cleanup runs
    with pytest.raises(StageError):
        crops_row(talk, SMALL, str(root))
    monkeypatch.undo()
    parts = [p for p in root.rglob("*") if p.is_file()]
    assert len(parts) == 1 and parts[0].name.startswith(".") and parts[0].name.endswith(".part")
    assert parts[0].parent == root and parts[0].stat().st_size > 0  # partial output, never at a published path
    assert sweep(str(root), set(), retention_hours=1.0, dry_run=False) == []  # too young to sweep
    assert sweep(str(root), set(), retention_hours=0.0, dry_run=False) == [str(parts[0])]
    assert files_under(root) == {}


# ---- through the engine, and on S3 --------------------------------------------------------------

STAGES = ["ingest", "probe", "split", "faces", "crops"]


def crops_config(tmp: Path, lake: Path | str) -> Path:
    path = write_config(tmp, lake)
    doc = yaml.safe_load(path.read_text())
    doc["stages"] = {k: v for k, v in doc["stages"].items() if k in STAGES}
    doc["stages"]["crops"] = {"udf": "crops.write", "input": ["silver.faces", "silver.clips"],
                              "output": "silver.crops", "version": 1, "resources": {"batch": 8},
                              "params": {"dir": "crops", "size": 512, "min_crop_px": 256}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.spark
def test_engine_run_writes_rows_files_and_quarantine(engine, shared_videos: Path, tmp_path: Path) -> None:
    from facevid.jobs.runner import run_pipeline

    src = tmp_path / "videos"
    src.mkdir()
    for name in ("lp_d18.mp4", "lp_s13.mp4"):
        shutil.copy(shared_videos / name, src / name)
    ctx = make_context(engine, crops_config(tmp_path, tmp_path / "lake"), [str(src)])
    reports = {r.stage: r for r in run_pipeline(ctx, STAGES, log=lambda m: None)}
    assert (reports["crops"].pending, reports["crops"].rows, reports["crops"].errors) == (2, 2, 1)
    out = {r["video_uri"].rsplit("/", 1)[1]: r for r in rows(
        ctx, "SELECT k.*, c.video_uri FROM silver_crops k JOIN silver_clips c ON c.clip_id = k.clip_id")}
    good, small = out["lp_d18.mp4"], out["lp_s13.mp4"]
    assert good["error"] is None and re.fullmatch(rf"{re.escape(ctx.cfg.lake)}/crops/{good['clip_id']}/[0-9a-f]{{20}}\.mp4",
                                                  good["crop_uri"])
    assert (good["crop_size"], good["crop_side"], good["n_frames"], good["has_audio"]) == (512, 480, 216, True)
    assert small["error"].startswith("min_crop_px:") and small["crop_uri"] is None
    digest = Path(good["crop_uri"]).stem
    assert sorted(p.relative_to(Path(ctx.cfg.lake) / "crops").as_posix()
                  for p in (Path(ctx.cfg.lake) / "crops").rglob("*") if p.is_file()) == \
        [f"{good['clip_id']}/{digest}.json", f"{good['clip_id']}/{digest}.mp4"]
    q = rows(ctx, "SELECT rule, value, threshold FROM quarantine WHERE stage = 'crops'")
    assert q == [{"rule": "crops.min_crop_px", "value": small["error"].split(": ")[1], "threshold": "256"}]
    assert [r.pending for r in run_pipeline(ctx, ["crops"], log=lambda m: None)] == [0]


@pytest.mark.s3
def test_crop_of_an_s3_video_into_an_s3_lake(s3_server, shared_videos: Path) -> None:
    bucket = s3_server.bucket("facevid-crops")
    client = s3_server.client()
    client.upload_file(str(shared_videos / "lp_d18.mp4"), "facevid-crops", "raw/lp_d18.mp4")
    row = {**faces_row(shared_videos, "lp_d18", 0.0, 3.0), "video_uri": f"{bucket}/raw/lp_d18.mp4"}
    res = crops_row(row, CropParams(), f"{bucket}/lake/crops")
    assert re.fullmatch(r"s3://facevid-crops/lake/crops/lp_d18/[0-9a-f]{20}\.mp4", res["crop_uri"])
    key = res["crop_uri"].split("/", 3)[3]
    body = client.get_object(Bucket="facevid-crops", Key=key)["Body"].read()
    assert len(body) == res["crop_bytes"]
    assert crops_row(row, CropParams(), f"{bucket}/lake/crops") == res  # reused via the marker
    assert client.get_object(Bucket="facevid-crops", Key=key)["Body"].read() == body
    import io

    with av.open(io.BytesIO(body)) as c:
        assert (c.streams.video[0].width, sum(1 for _ in c.decode(video=0))) == (512, res["n_frames"])
