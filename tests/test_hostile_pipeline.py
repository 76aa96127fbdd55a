"""Hostile inputs end as error rows (and quarantine rows) or correct rows; the run succeeds."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from conftest import make_context, rows, write_config

from facevid.jobs.runner import run_pipeline

pytestmark = [pytest.mark.spark]


@pytest.fixture(scope="module")
def hostile_run(engine, hostile_videos: dict[str, Path], tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    src = next(iter(hostile_videos.values())).parent
    cfg = write_config(tmp, tmp / "lake", {"split": {"params": {"min_clip_s": 0.5}}})
    ctx = make_context(engine, cfg, [str(src)])
    run_pipeline(ctx, log=lambda m: None)
    return ctx


def by_file(ctx, table: str) -> dict[str, dict]:
    return {r["file"]: r for r in rows(ctx, f"SELECT regexp_extract(uri, '[^/]+$', 0) AS file, * FROM {table}")}


def test_bad_files_are_error_rows_with_quarantine(hostile_run) -> None:
    videos = by_file(hostile_run, "bronze_videos")
    expect = {"zero.mp4": "empty", "text.mp4": "not_video", "truncated.mp4": ("truncated", "decode")}
    for name, category in expect.items():
        assert videos[name]["error"] is not None, name
        assert videos[name]["error"].split(":")[0] in (category if isinstance(category, tuple) else (category,))
    q = {r["key"]: r for r in rows(hostile_run, "SELECT * FROM quarantine WHERE stage = 'probe'")}
    for name in expect:
        assert q[videos[name]["video_id"]]["rule"].startswith("probe.")


def test_odd_rotated_and_one_frame_videos_are_correct_rows(hostile_run) -> None:
    videos = by_file(hostile_run, "bronze_videos")
    assert videos["rotated.mp4"]["error"] is None
    assert (videos["rotated.mp4"]["rotation"], videos["rotated.mp4"]["width"], videos["rotated.mp4"]["height"]) \
        == (90, 96, 160)
    assert (videos["odd.mp4"]["width"], videos["odd.mp4"]["height"]) == (161, 97)
    assert videos["one_frame.mp4"]["frame_count"] == 1


def test_every_file_is_accounted_for(hostile_run, hostile_videos: dict[str, Path]) -> None:
    files = by_file(hostile_run, "bronze_files")
    assert set(files) == {p.name for p in hostile_videos.values()}
    videos = by_file(hostile_run, "bronze_videos")
    clips = rows(hostile_run, "SELECT video_id, error FROM silver_clips")
    faces = rows(hostile_run, "SELECT clip_id, error FROM silver_faces")
    good = {v["video_id"] for v in videos.values() if v["error"] is None}
    assert good <= {c["video_id"] for c in clips}  # every probed video reached split
    assert len(faces) == sum(1 for c in clips if c["error"] is None)


class FifoWatch:
    """Whether anyone opens a FIFO for reading: a reader blocks in ``open`` until a writer comes,
    so a writer that opens without blocking proves a reader is there (and lets it go)."""

    def __init__(self, path: Path) -> None:
        import threading

        os.mkfifo(path)
        self.path, self.opened, self._stop = path, False, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader
                    raise
                continue
            self.opened = True

    def stop(self) -> bool:
        self._stop.set()
        self._thread.join()
        return self.opened


def test_undecodable_names_and_links_out_of_the_root(engine, shared_videos: Path, tmp_path: Path) -> None:
    from facevid.udfs.media.probe import probe_video

    src, outside = tmp_path / "src", tmp_path / "outside"
    (src / "sub").mkdir(parents=True)
    (outside / "folder").mkdir(parents=True)
    bad = os.path.join(os.fsencode(src), b"caf\xe9 \xff 50%.mp4")  # Latin-1 é, a lone 0xff, a literal %
    shutil.copy(shared_videos / "lp_d18.mp4", bad)
    shutil.copy(shared_videos / "neg_cat.mp4", src / "sub" / "100% cat.mp4")
    shutil.copy(shared_videos / "lp_d19.mp4", outside / "video.mp4")
    shutil.copy(shared_videos / "lp_d20.mp4", outside / "folder" / "hidden_gem.mp4")
    fifo = FifoWatch(outside / "fifo.mp4")
    for name, target in {"passwd.mp4": Path("/etc/passwd"), "out.mp4": outside / "video.mp4",
                         "fifo.mp4": outside / "fifo.mp4", "broken.mp4": src / "gone.mp4",
                         "ext": outside / "folder", "sub/loop": Path(".."),
                         "again.mp4": Path("sub/100% cat.mp4")}.items():
        (src / name).symlink_to(target)
    ctx = make_context(engine, write_config(tmp_path, tmp_path / "lake"), [str(src)])
    try:
        run_pipeline(ctx, ["ingest", "probe"], log=lambda m: None)
    finally:
        assert not fifo.stop(), "the FIFO outside the root was opened"

    files = by_file(ctx, "bronze_files")
    assert {f: (r["error"] or "").split(":")[0] for f, r in files.items()} == {
        "caf%E9%20%FF%2050%25.mp4": "", "100% cat.mp4": "", "again.mp4": "",
        "passwd.mp4": "link_outside_root", "out.mp4": "link_outside_root", "fifo.mp4": "link_outside_root",
        "ext": "link_outside_root", "broken.mp4": "missing"}
    escaped = files["caf%E9%20%FF%2050%25.mp4"]
    assert escaped["uri"] == "file://" + str(src) + "/caf%E9%20%FF%2050%25.mp4"
    assert files["again.mp4"]["video_id"] == files["100% cat.mp4"]["video_id"]  # a link inside: same content
    for name in ("passwd.mp4", "out.mp4", "fifo.mp4", "ext", "broken.mp4"):
        assert files[name]["sha256"] is None and files[name]["video_id"] is None, name
    assert "/etc/passwd" in files["passwd.mp4"]["error"]
    rules = {r["key"]: r["rule"] for r in rows(ctx, "SELECT key, rule FROM quarantine WHERE stage = 'ingest'")}
    assert rules[files["out.mp4"]["uri"]] == "ingest.link_outside_root"
    assert rules[files["broken.mp4"]["uri"]] == "ingest.missing"

    videos = {r["video_id"]: r for r in rows(ctx, "SELECT * FROM bronze_videos")}
    assert len(videos) == 2 and all(v["error"] is None for v in videos.values())
    probed = videos[escaped["video_id"]]
    assert probed["uri"] == escaped["uri"]
    expected = probe_video(str(shared_videos / "lp_d18.mp4"))
    assert probed["duration_s"] == pytest.approx(expected["duration_s"]) and probed["duration_s"] > 1
    assert (probed["frame_count"], probed["width"]) == (expected["frame_count"], expected["width"])
