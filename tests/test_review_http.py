"""The review page's WSGI app over HTTP (urllib against real servers on port 0), on a real lake:
a gold.review_tasks table over the shared talking-face clips, verdicts appended with delta-rs;
and the ``facevid review`` command's errors."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.cookiejar import CookieJar

import cv2
import numpy as np
import pytest
from conftest import write_config
from deltalake import DeltaTable
from review_tasks import shared_clips, write_review_tasks

from facevid.jobs.review.app import ReviewApp
from facevid.jobs.review.cli import make_review_server
from facevid.jobs.review.leases import TaskLeases
from facevid.jobs.review.store import ReviewStore
from facevid.udfs.annotate.vocabulary import load_vocabulary


class Browser:
    """One cookie jar (one browser session) against one server."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def call(self, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        req = urllib.request.Request(self.base + path, data=data, headers={**hdrs, **(headers or {})})
        try:
            with self.opener.open(req, timeout=30) as res:
                return res.status, res.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str, body: dict | None = None) -> dict:
        status, raw = self.call(path, body)
        assert status == 200, (status, raw)
        return json.loads(raw)


@pytest.fixture
def lake(tmp_path, shared_videos):
    path = tmp_path / "lake"
    write_review_tasks(path, shared_clips(shared_videos))  # 6 clips: 6 static + 6 dynamic tasks
    return path


def _serve(lake, server_id: str, reviewer: str = "alice", **kw):
    app = ReviewApp(ReviewStore(str(lake), str(lake), server_id, wait_s=0.5), TaskLeases(str(lake), server_id),
                    load_vocabulary(), reviewer, server_id, **kw)
    httpd = make_review_server(app, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_port}"


@pytest.fixture
def server(lake):
    httpd, base = _serve(lake, "srv1")
    yield base
    httpd.shutdown()
    httpd.server_close()


def _verdicts(lake) -> tuple[int | None, list[dict]]:
    path = str(lake / "review" / "verdicts")
    if not DeltaTable.is_deltatable(path):
        return None, []
    dt = DeltaTable(path)
    return dt.version(), dt.to_pyarrow_table().to_pylist()


def _accept_all(task: dict) -> dict:
    return {f["name"]: f["model_value"] if not f["many"] else f["model_value"] or [] for f in task["fields"]}


def test_page_task_frames_and_a_submitted_correction(server, lake) -> None:
    alice = Browser(server)
    status, html = alice.call("/")
    assert status == 200 and b"/page.js" in html and b"No more tasks" in html
    assert alice.call("/page.js")[0] == 200 and alice.call("/page.css")[0] == 200
    data = alice.json("/api/task")
    assert data["reviewer"] == "alice" and data["progress"] == {"done": 0, "total": 12}
    task = data["task"]
    assert alice.json("/api/task")["task"]["task_id"] == task["task_id"]  # the same task until submitted
    fields = {f["name"]: f for f in task["fields"]}
    for frame in task["frames"]:
        status, jpeg = alice.call(frame["url"])
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert status == 200 and img is not None and min(img.shape[:2]) >= 480
    assert alice.call(f"/frame?task={task['task_id']}&n=9")[0] == 404
    # a bad value: 400, nothing written
    name = "emotion" if task["kind"] == "dynamic" else "ethnicity"
    status, raw = alice.call("/api/submit", {"task_id": task["task_id"], "values": {**_accept_all(task), name: "Bored"}})
    assert status == 400 and "not an option" in json.loads(raw)["error"]
    assert _verdicts(lake) == (None, [])
    status, raw = alice.call("/api/submit", {"task_id": task["task_id"], "values": {name: None}})
    assert status == 400 and "missing" in json.loads(raw)["error"]
    # a correction: the one-field's value changed
    new = next(o for o in fields[name]["options"] if o != fields[name]["model_value"])
    res = alice.json("/api/submit", {"task_id": task["task_id"], "values": {**_accept_all(task), name: new}})
    assert res["written"] == len(task["fields"]) and res["verdicts_version"] == 0
    assert res["verdicts"][name] == "correct" and sum(v == "accept" for v in res["verdicts"].values()) == len(fields) - 1
    version, rows = _verdicts(lake)
    assert version == 0 and len(rows) == len(fields)  # one commit for the task
    row = next(r for r in rows if r["field"] == name)
    assert json.loads(row["reviewer_value"]) == new and row["reviewer"] == "alice" and row["tasks_version"] == 0
    assert {r["session_id"] for r in rows} == {"srv1"}
    status, raw = alice.call("/api/submit", {"task_id": task["task_id"], "values": _accept_all(task)})
    assert status == 409 and "reviewed already" in json.loads(raw)["error"]  # a double submit writes nothing
    nxt = alice.json("/api/task")
    assert nxt["task"]["task_id"] != task["task_id"] and nxt["progress"]["done"] == 1
    assert _verdicts(lake)[0] == 0


def test_restoration_task_before_and_after_and_gold_reads_the_verdict(tmp_path, shared_videos) -> None:
    import pandas as pd

    from facevid.udfs.curation.verdicts import RestorationPolicy, apply_restoration, apply_verdicts
    from facevid.udfs.media.video import iter_frames

    lake = tmp_path / "lake"
    clips = shared_clips(shared_videos, ("lp_d18.mp4", "lp_d19.mp4"))
    clips[0].update(restored_uri=str(shared_videos / "lp_d20.mp4"), eye_flagged=True)  # stands in for a restored file
    write_review_tasks(lake, clips)
    httpd, base = _serve(lake, "srv")
    try:
        a = Browser(base)
        task = a.json("/api/task")["task"]
        assert task["task_id"] == "restoration:lp_d18" and task["flags"] == ["eye_artifact"]  # flagged: first
        assert task["fields"] == [{"name": "restoration", "options": ["accept", "reject"], "many": False,
                                   "restoration": True, "model_value": "reject"}]
        assert [f["label"] for f in task["frames"]] == ["before restoration", "after restoration"]
        for frame, source in zip(task["frames"], ("lp_d18.mp4", "lp_d20.mp4"), strict=True):
            shown = cv2.imdecode(np.frombuffer(a.call(frame["url"])[1], np.uint8), cv2.IMREAD_COLOR)
            first = next(iter_frames(str(shared_videos / source)))[1]
            assert np.abs(shown.astype(int) - first).mean() < 3  # the first frame of each file
        for bad in ("maybe", None, ["reject"]):
            status, _ = a.call("/api/submit", {"task_id": task["task_id"], "values": {"restoration": bad}})
            assert status == 400
        res = a.json("/api/submit", {"task_id": task["task_id"], "values": {"restoration": "reject"}})
        assert res["verdicts"] == {"restoration": "reject"}
        while (static := a.json("/api/task")["task"])["kind"] != "static":
            a.json("/api/skip", {"task_id": static["task_id"]})
        fixed = {**_accept_all(static), "ethnicity": "Korean"}
        a.json("/api/submit", {"task_id": static["task_id"], "values": fixed})
    finally:
        httpd.shutdown()
        httpd.server_close()
    verdicts = pd.DataFrame(_verdicts(lake)[1])
    out, _ = apply_restoration(pd.DataFrame(clips), verdicts, RestorationPolicy())  # gold's own reading
    assert out.set_index("clip_id").loc["lp_d18", "restoration"] == "rejected"
    gold = apply_verdicts(pd.DataFrame(clips), verdicts, {"appearance", "lighting", "action"}).set_index("clip_id")
    assert gold.loc[static["clip_id"], "ethnicity"] == "Korean"
    assert gold.loc[static["clip_id"], "reviewed_fields"] == ["age", "appearance", "ethnicity", "lighting"]


def test_sessions_never_share_a_task_and_skips(server, lake) -> None:
    a, b = Browser(server), Browser(server)
    ta, tb = a.json("/api/task")["task"]["task_id"], b.json("/api/task")["task"]["task_id"]
    assert ta != tb
    a.json("/api/skip", {"task_id": ta})
    after = a.json("/api/task")
    assert after["task"]["task_id"] not in (ta, tb) and after["skipped"] == 1
    assert b.json("/api/ping", {"task_id": tb}) == {"held": True}
    assert a.json("/api/ping", {"task_id": tb}) == {"held": False}  # cannot renew someone else's lease
    seen = {ta, tb}
    while (task := a.json("/api/task")["task"]) is not None:  # a reviews everything it can get
        assert task["task_id"] not in seen
        seen.add(task["task_id"])
        a.json("/api/submit", {"task_id": task["task_id"], "values": _accept_all(task)})
    end = a.json("/api/task")
    assert end["progress"] == {"done": 10, "total": 12} and end["skipped"] == 1  # b's task and the skipped one
    assert a.json("/api/unskip", {}) == {"unskipped": 1}
    assert a.json("/api/task")["task"]["task_id"] == ta
    version, rows = _verdicts(lake)
    assert version == 9 and all(r["verdict"] == "accept" for r in rows)  # 10 tasks, 10 commits


def test_concurrent_double_submit_writes_once_and_a_busy_table_writes_nothing(server, lake) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from facevid.jobs.lease import Lease, lease_store

    a = Browser(server)
    task = a.json("/api/task")["task"]
    body = {"task_id": task["task_id"], "values": _accept_all(task)}
    with ThreadPoolExecutor(4) as pool:
        codes = sorted(code for code, _ in pool.map(lambda _: a.call("/api/submit", body), range(4)))
    assert codes == [200, 409, 409, 409]
    version, rows = _verdicts(lake)
    assert version == 0 and len(rows) == len(task["fields"])
    task = a.json("/api/task")["task"]
    with Lease(lease_store(str(lake)), "review_verdicts", "maintain-run", command="maintain") as held:
        held.acquire()  # e.g. `facevid maintain` compacting the table
        status, raw = a.call("/api/submit", {"task_id": task["task_id"], "values": _accept_all(task)})
        assert status == 503 and "busy" in json.loads(raw)["error"]
    assert _verdicts(lake)[0] == 0  # nothing written
    assert a.json("/api/submit", {"task_id": task["task_id"], "values": _accept_all(task)})["verdicts_version"] == 1


def test_two_servers_on_one_lake_and_the_task_filter(lake) -> None:
    s1, base1 = _serve(lake, "srv1", "alice", kind="static")
    s2, base2 = _serve(lake, "srv2", "bob", kind="static")
    try:
        alice, bob = Browser(base1), Browser(base2)
        reviewed: list[str] = []
        for _ in range(3):  # both hold a task at once, then both submit
            tasks = [who.json("/api/task") for who in (alice, bob)]
            assert all(d["task"]["kind"] == "static" and d["progress"]["total"] == 6 for d in tasks)
            ids = [d["task"]["task_id"] for d in tasks]
            assert ids[0] != ids[1] and not set(ids) & set(reviewed)
            for who, data in zip((alice, bob), tasks, strict=True):
                who.json("/api/submit", {"task_id": data["task"]["task_id"], "values": _accept_all(data["task"])})
            reviewed += ids
        assert alice.json("/api/task")["task"] is None and bob.json("/api/task")["progress"]["done"] == 6
        rows = _verdicts(lake)[1]
        assert {r["reviewer"] for r in rows} == {"alice", "bob"} and len(rows) == 6 * 4
        assert {r["task_id"] for r in rows} == set(reviewed)
    finally:
        for s in (s1, s2):
            s.shutdown()
            s.server_close()


def test_tasks_table_rebuilt_while_serving(server, lake, shared_videos) -> None:
    a = Browser(server)
    first = a.json("/api/task")["task"]
    write_review_tasks(lake, shared_clips(shared_videos)[:2])  # the stage rebuilt gold.review_tasks: v1
    data = a.json("/api/task")
    assert data["progress"]["total"] == 4
    task = data["task"]
    assert task["clip_id"] in ("lp_d11", "lp_d18") and (task["task_id"] == first["task_id"]
                                                         or first["clip_id"] not in ("lp_d11", "lp_d18"))
    a.json("/api/submit", {"task_id": task["task_id"], "values": _accept_all(task)})
    assert {r["tasks_version"] for r in _verdicts(lake)[1]} == {1}


def test_requests_that_are_refused(server) -> None:
    a = Browser(server)
    port = server.rsplit(":", 1)[1]
    assert a.call("/api/task", headers={"Host": f"evil.example:{port}"})[0] == 403  # DNS rebinding
    assert a.call("/", headers={"Host": f"localhost:{port}"})[0] == 200
    req = urllib.request.Request(server + "/api/skip", data=b"task_id=x",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as err:  # a cross-site form cannot post
        a.opener.open(req, timeout=10)
    assert err.value.code == 415
    assert a.call("/api/skip", {"task_id": "static:nope"})[0] == 409
    assert a.call("/nothing")[0] == 404


def test_the_command_refuses_bad_setups(tmp_path, lake, capsys) -> None:
    from facevid.jobs.cli import main

    cfg = write_config(tmp_path, lake)
    assert main(["review", "--config", str(cfg)]) == 2
    assert "reviewer name None" in capsys.readouterr().err
    assert main(["review", "--config", str(cfg), "--reviewer", "a b"]) == 2
    assert main(["review", "--config", str(cfg), "--reviewer", "a", "--lake", "uc:main.x", "--files",
                 str(tmp_path)]) == 2
    assert "path lake" in capsys.readouterr().err
    assert main(["review", "--config", str(cfg), "--reviewer", "a", "--lake", str(tmp_path / "empty")]) == 2
    assert "no gold.review_tasks" in capsys.readouterr().err


def test_the_page_offers_the_review_stages_vocabulary(tmp_path, lake) -> None:
    import yaml

    from facevid.jobs.config import load_config
    from facevid.jobs.review.cli import review_vocabulary
    from facevid.udfs.annotate.vocabulary import DEFAULT_PATH

    assert review_vocabulary(load_config(write_config(tmp_path, lake))).options("emotion")[-2] == "Contempt"
    doc = yaml.safe_load(DEFAULT_PATH.read_text())
    emotion = doc["attributes"]["emotion"]
    emotion["options"] = ["Weary" if o == "Contempt" else o for o in emotion["options"]]
    emotion["synonyms"] = {k: "Weary" if v == "Contempt" else v for k, v in emotion["synonyms"].items()}
    (tmp_path / "vocab.yml").write_text(yaml.safe_dump(doc))
    cfg = load_config(write_config(tmp_path, lake, {"review_tasks": {"params": {"vocabulary_path": str(tmp_path / "vocab.yml")}}}))
    assert review_vocabulary(cfg).options("emotion")[-2] == "Weary"
