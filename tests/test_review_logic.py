"""The review page's logic without a browser: field controls from the real vocabulary, value
validation, verdict rows, the queue order, task leases (threads and a killed process) and the
lake store (real Delta tables), frames decoded from the shared talking-face clips."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from review_tasks import shared_clips, write_review_tasks

from facevid.jobs.review.frames import FrameCache, decode_jpegs
from facevid.jobs.review.leases import TaskLeases, lease_name
from facevid.jobs.review.logic import check_reviewer, done_ids, field_spec, queue_key, select, verdict_rows
from facevid.jobs.review.store import ReviewStore, table_path
from facevid.udfs.annotate.vocabulary import load_vocabulary
from facevid.udfs.curation.review_schema import AGE_GROUPS, VERDICT_SCHEMA

VOCAB = load_vocabulary()


def _task(**kw):
    base = {"task_id": "static:c1", "kind": "static", "batch_id": "static-1", "clip_id": "c1",
            "fields": ["ethnicity", "appearance", "lighting", "age"],
            "model_values": json.dumps({"ethnicity": "White", "appearance": ["Short hair", "Male"],
                                        "lighting": None, "age": "30-44"})}
    return {**base, **kw}


def test_reviewer_names() -> None:
    assert check_reviewer("alice.b-1@lab") == "alice.b-1@lab"
    for bad in (None, "", " bob", "a;b", "-x", "x" * 65, "名前"):
        with pytest.raises(ValueError, match="reviewer name"):
            check_reviewer(bad)


def test_field_controls_come_from_the_vocabulary() -> None:
    appearance = field_spec("appearance", VOCAB)
    assert appearance.many and len(appearance.options) == 72 and appearance.options == VOCAB.options("appearance")
    assert not field_spec("ethnicity", VOCAB).many and not field_spec("emotion", VOCAB).many
    assert field_spec("age", VOCAB).options == AGE_GROUPS
    rest = field_spec("restoration", VOCAB)
    assert rest.restoration and rest.options == ("accept", "reject")
    with pytest.raises(ValueError, match="neither"):
        field_spec("hair_colour", VOCAB)


def test_values_are_validated_and_made_canonical() -> None:
    appearance = field_spec("appearance", VOCAB)
    # vocabulary order, whatever order the page sent
    assert appearance.canonical(["Short hair", "No beard"]) == ["No beard", "Short hair"]
    assert appearance.canonical(None) == []
    for bad in (["Short hair", "Short hair"], ["short hair"], "Male", [1]):
        with pytest.raises(ValueError, match="appearance"):
            appearance.canonical(bad)
    ethnicity = field_spec("ethnicity", VOCAB)
    assert ethnicity.canonical("Asian") == "Asian" and ethnicity.canonical(None) is None
    for bad in ("asian", ["Asian"], 3):
        with pytest.raises(ValueError, match="ethnicity"):
            ethnicity.canonical(bad)
    with pytest.raises(ValueError, match="accept, reject"):
        field_spec("restoration", VOCAB).canonical(None)


def test_verdict_rows_accept_equal_values_and_record_corrections() -> None:
    values = {"ethnicity": "White", "appearance": ["Male", "Short hair"], "lighting": ["Bright", "Dark"],
              "age": "45-59"}
    rows = verdict_rows(_task(), values, VOCAB, reviewer="alice", session_id="s1", tasks_version=4)
    by = {r["field"]: r for r in rows}
    assert [r["field"] for r in rows] == ["ethnicity", "appearance", "lighting", "age"]
    assert by["ethnicity"]["verdict"] == "accept" and by["ethnicity"]["reviewer_value"] == '"White"'
    assert by["appearance"]["verdict"] == "accept"  # same set, other order
    assert by["appearance"]["model_value"] == '["Short hair", "Male"]'  # as the model gave it
    assert by["lighting"]["verdict"] == "correct"
    assert json.loads(by["lighting"]["reviewer_value"]) == ["Dark", "Bright"]  # vocabulary order
    assert by["age"]["verdict"] == "correct" and by["age"]["model_value"] == '"30-44"'
    assert {r["reviewer"] for r in rows} == {"alice"} and {r["tasks_version"] for r in rows} == {4}
    assert len({r["verdict_id"] for r in rows}) == 4
    table = pa.Table.from_pylist(rows, schema=VERDICT_SCHEMA)  # the rows are the table's schema exactly
    assert table.num_rows == 4 and set(rows[0]) == set(VERDICT_SCHEMA.names)


def test_a_null_model_value_accepted_as_none() -> None:
    rows = verdict_rows(_task(), {"ethnicity": "White", "appearance": ["Male", "Short hair"], "lighting": [],
                                  "age": "30-44"}, VOCAB, reviewer="a", session_id="s", tasks_version=0)
    assert [r["verdict"] for r in rows] == ["accept"] * 4
    assert rows[2]["model_value"] == "null" and rows[2]["reviewer_value"] == "[]"


def test_restoration_verdicts() -> None:
    task = _task(task_id="restoration:c1", kind="restoration", fields=["restoration"], model_values=None)
    for choice in ("accept", "reject"):
        (row,) = verdict_rows(task, {"restoration": choice}, VOCAB, reviewer="a", session_id="s", tasks_version=0)
        assert row["verdict"] == choice and row["reviewer_value"] == json.dumps(choice)
        assert row["model_value"] == "null"


def test_incomplete_or_foreign_submissions_are_refused() -> None:
    ok = {"ethnicity": "White", "appearance": [], "lighting": [], "age": None}
    with pytest.raises(ValueError, match="missing: age"):
        verdict_rows(_task(), {k: v for k, v in ok.items() if k != "age"}, VOCAB, reviewer="a", session_id="s",
                     tasks_version=0)
    with pytest.raises(ValueError, match="not in the task: emotion"):
        verdict_rows(_task(), {**ok, "emotion": "Happy"}, VOCAB, reviewer="a", session_id="s", tasks_version=0)
    with pytest.raises(ValueError, match="age"):
        verdict_rows(_task(), {**ok, "age": "31"}, VOCAB, reviewer="a", session_id="s", tasks_version=0)


def test_queue_order_and_done_tasks() -> None:
    tasks = [{"task_id": "d", "kind": "static", "priority": 0.0, "in_sample": True, "sample_rank": 2, "fields": ["a"]},
             {"task_id": "c", "kind": "static", "priority": 0.0, "in_sample": True, "sample_rank": 1, "fields": ["a"]},
             {"task_id": "b", "kind": "dynamic", "priority": 0.0, "in_sample": False, "sample_rank": 0, "fields": ["a"]},
             {"task_id": "a", "kind": "static", "priority": 2.0, "in_sample": False, "sample_rank": 9, "fields": ["a"]},
             {"task_id": "e", "kind": "static", "priority": None, "in_sample": None, "sample_rank": None,
              "fields": ["a", "b"]},
             {"task_id": "f", "kind": "static", "priority": 0.0, "in_sample": True, "sample_rank": 1, "fields": []}]
    assert [t["task_id"] for t in select(tasks)] == ["a", "c", "f", "d", "b", "e"]
    assert [t["task_id"] for t in select(tasks, kind="dynamic")] == ["b"]
    assert queue_key(tasks[4])[2] > 10**9  # no rank: last
    assert done_ids(tasks, {"e": {"a"}, "d": {"a", "x"}}) == {"d", "f"}  # e lacks field b; f has no fields


def test_task_leases_between_sessions_and_servers(tmp_path) -> None:
    one, two = TaskLeases(str(tmp_path), "server1"), TaskLeases(str(tmp_path), "server2")
    assert lease_name("static:c1") == lease_name("static:c1") != lease_name("static:c2")
    assert one.take("static:c1", "server1/a", "alice")
    assert one.take("static:c1", "server1/a", "alice")  # renewing is taking again
    assert not one.take("static:c1", "server1/b", "carol")  # another browser of the same server
    assert not two.take("static:c1", "server2/a", "bob")  # another server on the same lake
    assert one.holder("static:c1")["reviewer"] == "alice"
    two.release("static:c1", "server2/a")  # not its lease: nothing happens
    assert not two.take("static:c1", "server2/a", "bob")
    one.release("static:c1", "server1/a")
    assert one.holder("static:c1") is None and two.take("static:c1", "server2/a", "bob")
    short = TaskLeases(str(tmp_path), "server3", ttl_s=0.2)
    assert short.take("static:c2", "server3/a", "dan")
    assert not one.take("static:c2", "server1/a", "alice")
    time.sleep(0.3)  # an abandoned browser's lease expires
    assert one.take("static:c2", "server1/a", "alice")
    assert not short.take("static:c2", "server3/a", "dan")  # and its old holder cannot renew it


def test_a_killed_servers_task_lease_is_free_at_once(tmp_path) -> None:
    code = textwrap.dedent(f"""
        import time
        from facevid.jobs.review.leases import TaskLeases
        assert TaskLeases({str(tmp_path)!r}, "dead").take("static:c9", "dead/a", "eve")
        print("held", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        alive = TaskLeases(str(tmp_path), "alive")
        assert not alive.take("static:c9", "alive/a", "alice")  # its holder still runs
        proc.kill()
        proc.wait(10)
        assert alive.take("static:c9", "alive/a", "alice")  # holder gone: free before its 600 s expire
    finally:
        proc.kill()


def test_store_appends_one_commit_per_task_and_follows_versions(tmp_path, shared_videos) -> None:
    lake = tmp_path / "lake"
    clips = shared_clips(shared_videos, ("lp_d18.mp4", "lp_d19.mp4"))
    write_review_tasks(lake, clips)
    store = ReviewStore(str(lake), str(lake), "srv")
    version, tasks, reviewed = store.refresh()
    assert version == 0 and len(tasks) == 4 and reviewed == {}
    task = tasks["dynamic:lp_d18"]
    rows = verdict_rows(task, {"action": ["Talk"], "emotion": "Happy"}, VOCAB, reviewer="a", session_id="srv",
                        tasks_version=version)
    assert store.append(rows) == 0  # the first append creates review.verdicts
    other = ReviewStore(str(lake), str(lake), "srv2")  # a second server sees it after its refresh
    assert other.refresh()[2] == {"dynamic:lp_d18": {"action", "emotion"}}
    rows2 = verdict_rows(tasks["static:lp_d19"], {"ethnicity": None, "appearance": [], "lighting": [], "age": None},
                         VOCAB, reviewer="b", session_id="srv2", tasks_version=version)
    assert other.append(rows2) == 1
    assert set(store.refresh()[2]) == {"dynamic:lp_d18", "static:lp_d19"}  # re-read: version 1 is not its own
    dt = DeltaTable(table_path(str(lake), "review.verdicts"))
    assert dt.version() == 1 and dt.to_pyarrow_table().num_rows == 6
    assert dt.to_pyarrow_table().schema.names == VERDICT_SCHEMA.names
    write_review_tasks(lake, clips[:1])  # the stage rebuilt the tasks: a new version, re-read
    version, tasks, _ = store.refresh()
    assert version == 1 and sorted(tasks) == ["dynamic:lp_d18", "static:lp_d18"]


def test_store_refuses_a_unity_catalog_lake() -> None:
    from facevid.jobs.config import ConfigError

    with pytest.raises(ConfigError, match="path lake"):
        ReviewStore("uc:main.facevid", "/tmp/files", "srv")


def test_frames_are_the_numbered_frames_of_the_video(shared_videos) -> None:
    from facevid.udfs.media.video import iter_frames

    path = str(shared_videos / "lp_d20.mp4")
    jpegs = decode_jpegs(path, [0, 7, 9, 10_000])
    assert sorted(jpegs) == [0, 7, 9]  # past the end: missing
    frames = [img for _, (_, img) in zip(range(10), iter_frames(path), strict=False)]
    for n in (0, 7, 9):
        img = cv2.imdecode(np.frombuffer(jpegs[n], np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == frames[n].shape == (480, 480, 3)
        assert np.abs(img.astype(int) - frames[n]).mean() < 3  # this frame, JPEG-compressed
    assert np.abs(frames[0].astype(int) - frames[9]).mean() > 3  # (and frames differ more than that)
    cache = FrameCache(max_items=2)
    assert cache.get(path, 7, [0, 7, 9]) == jpegs[7]
    assert len(cache._items) == 2 and cache.get(path, 10_000) is None
    big = decode_jpegs(str(shared_videos / "facenet_crowd_1080p.mp4"), [0], max_side=512)
    assert cv2.imdecode(np.frombuffer(big[0], np.uint8), cv2.IMREAD_COLOR).shape == (288, 512, 3)
