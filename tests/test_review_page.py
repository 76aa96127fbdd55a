"""``facevid review`` in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright):
on a copy of the full pipeline's lake, the real CLI serves the page as a subprocess; a reviewer
completes a static task with a correction made from the keyboard and a dynamic task with ``a``; the
server is SIGKILLed mid-task, restarted, and loses nothing; two reviewers at once never share a task.

Chromium is not optional here: ``make test`` installs it (Debian packages chromium, chromium-driver).
"""

from __future__ import annotations

import json
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, copy_lake
from conftest import rows as sql_rows
from deltalake import DeltaTable

from facevid.jobs.review.leases import TaskLeases, lease_name
from facevid.jobs.runner import run_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
WAIT_MS = 20_000


def _require_browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: `make test` installs it (Debian packages chromium, "
                    "chromium-driver); this test must run, not skip")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright (Python) is missing: `make test` installs the dev extra")
    return sync_playwright


def _serve(config: Path, reviewer: str, log: Path, port: int = 0) -> tuple[subprocess.Popen, str]:
    """``facevid review`` as a subprocess; returns it and the URL it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "facevid.jobs.cli", "review", "--config", str(config),
                             "--reviewer", reviewer, "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=log.open("a"), text=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sel.select(timeout=deadline - time.monotonic()):
        line = proc.stdout.readline()
        if match := re.search(r"http://127\.0\.0\.1:\d+/", line):
            return proc, match.group(0)
        if not line:
            break
    proc.kill()
    pytest.fail(f"facevid review did not start: {log.read_text()[-2000:]}")


def _browser(p, profile: Path):
    """A fresh Chromium with an empty user data dir (one reviewer's browser)."""
    context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
                                                   viewport={"width": 1280, "height": 900})
    page = context.pages[0] if context.pages else context.new_page()
    page.set_default_timeout(WAIT_MS)
    return context, page


def _task(page, not_this: str | None = None) -> str:
    """The task the page shows once it is loaded (and differs from ``not_this``); "" at the end."""
    page.wait_for_function("([prev]) => { const w = document.querySelector('#work'); const e = "
                           "document.querySelector('#end'); return (!w.hidden && w.dataset.task && w.dataset.task !== "
                           "prev) || (!e.hidden && prev !== '') }", arg=[not_this or ""])
    return page.eval_on_selector("#work", "w => w.hidden ? '' : w.dataset.task")


def _verdicts(path: str) -> tuple[int, list[dict]]:
    dt = DeltaTable(path)
    return dt.version(), dt.to_pyarrow_table().to_pylist()


def test_review_page_in_chromium(full_run, tmp_path) -> None:
    sync_playwright = _require_browser()
    ctx, _ = full_run
    mine = copy_lake(ctx, tmp_path)
    table = DeltaTable(mine.lake.location("gold.review_tasks"))  # written by the review.tasks stage in full_run
    tasks = table.to_pyarrow_table().to_pylist()
    assert len(tasks) >= 8 and {"static", "dynamic"} <= {t["kind"] for t in tasks}
    config, log = tmp_path / "pipeline.yml", tmp_path / "servers.log"
    verdicts = mine.lake.location("review.verdicts")
    procs: list[subprocess.Popen] = []
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            proc, url = _serve(config, "alice", log)
            procs.append(proc)
            browser, page = _browser(p, tmp_path / "alice")
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            current, done = _task(page), {}
            while len(done) < 2:  # one static and one dynamic task, in queue order
                kind = current.split(":")[0]
                if kind in done or kind not in ("static", "dynamic"):
                    page.keyboard.press("s")
                elif kind == "static":  # correct `appearance` from the keyboard: field 2, filter, tick, submit
                    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth)")
                    page.keyboard.press("2")
                    page.keyboard.type("Eyeglasses")
                    page.keyboard.press("Enter")
                    page.keyboard.press("Escape")
                    assert page.is_visible('fieldset[data-name="appearance"].changed .badge')
                    page.screenshot(path=str(tmp_path / "review_page.png"), full_page=True)
                    page.keyboard.press("Enter")
                    done[kind] = current
                else:
                    page.keyboard.press("a")  # accept every field as shown, submit
                    done[kind] = current
                current = _task(page, current)
            version, rows = _verdicts(verdicts)
            assert version == 1 and len(rows) == 6  # two tasks, one commit each
            static = {r["field"]: r for r in rows if r["task_id"] == done["static"]}
            assert sorted(static) == ["age", "appearance", "ethnicity", "lighting"]
            assert {f: r["verdict"] for f, r in static.items() if f != "appearance"} == dict.fromkeys(
                ("age", "ethnicity", "lighting"), "accept")
            model = set(json.loads(static["appearance"]["model_value"]) or [])
            assert static["appearance"]["verdict"] == "correct"
            assert set(json.loads(static["appearance"]["reviewer_value"])) == model ^ {"Eyeglasses"}
            assert [r["verdict"] for r in rows if r["task_id"] == done["dynamic"]] == ["accept", "accept"]
            assert {r["reviewer"] for r in rows} == {"alice"} and {r["tasks_version"] for r in rows} == {table.version()}
            clip = done["static"].split(":", 1)[1]
            fixed = sql_rows(mine, "SELECT clip_id, field FROM review_verdicts WHERE verdict = 'correct'")
            assert fixed == [{"clip_id": clip, "field": "appearance"}]  # the lake's engine reads what the page wrote
            run_pipeline(mine, ["gold"], log=lambda m: None)  # gold applies the verdicts
            (gold,) = sql_rows(mine, f"SELECT appearance, reviewed_fields, model_annotations FROM gold_clips "
                                 f"WHERE clip_id = '{clip}'")
            assert set(gold["appearance"]) == model ^ {"Eyeglasses"} and "appearance" in gold["reviewed_fields"]
            assert json.loads(gold["model_annotations"])["appearance"] == json.loads(static["appearance"]["model_value"])
            from test_annotations_e2e import readme_sql

            published, changed, per_reviewer = (sql_rows(mine, q) for q in readme_sql("review-sql"))  # as written
            gold_rows = sql_rows(mine, "SELECT restoration, eye_score FROM gold_clips")
            assert {r["restoration"]: r["clips"] for r in published} == {
                k: sum(g["restoration"] == k for g in gold_rows) for k in {g["restoration"] for g in gold_rows}}
            assert any(r["restoration"] == "restored" for r in published)  # enhance restored the soft gold clips
            reviewed = {r["clip_id"]: r for r in changed}  # accepted fields count as reviewed too
            assert set(reviewed) == {clip, done["dynamic"].split(":", 1)[1]}
            assert "appearance" in reviewed[clip]["reviewed_fields"] and reviewed[clip]["model_annotations"]
            assert {(r["reviewer"], r["kind"], r["verdict"]): r["fields"] for r in per_reviewer} == {
                ("alice", "static", "accept"): 3, ("alice", "static", "correct"): 1, ("alice", "dynamic", "accept"): 2}
            report = subprocess.run([sys.executable, "-m", "facevid.jobs.cli", "review", "--report", "--config",
                                     str(config)], cwd=REPO, capture_output=True, text=True, timeout=300)
            assert report.returncode == 0, report.stderr
            lines = {ln.split("|")[2].strip(): ln for ln in report.stdout.splitlines() if ln.startswith("| ") and "-20" in ln}
            # the static batch: one corrected task among its sample -> rejected at once (Ac 0 for AQL 1 here)
            assert lines["static"].rstrip(" |").endswith("reject") and "| 1 " in lines["static"], report.stdout
            assert "incomplete (1 of" in lines["dynamic"] and "appearance 1/1 (100%)" in report.stdout

            # a third task, half-edited, when the server is SIGKILLed
            third = current
            page.click("#fields fieldset:first-of-type .options label:last-child")
            proc.kill()
            proc.wait(10)
            assert _verdicts(verdicts) == (version, rows)  # every submitted verdict survived
            assert TaskLeases(mine.cfg.files_root, "probe").holder(third) is None  # its server is gone: free
            port = int(url.rsplit(":", 1)[1].strip("/"))
            proc, url = _serve(config, "alice", log, port)
            procs.append(proc)
            page.reload()
            served, seen = _task(page), []
            while served and served != third and len(seen) < len(tasks):  # skips live in a server's memory:
                seen.append(served)                                       # the restarted one starts over
                page.keyboard.press("s")
                served = _task(page, served)
            assert served == third, seen  # the killed task is served again (its lease is free, no verdict)

            # a second reviewer, on a second server, at the same time
            proc_b, url_b = _serve(config, "bob", log)
            procs.append(proc_b)
            bob_browser, bob = _browser(p, tmp_path / "bob")
            bob.on("pageerror", lambda exc: errors.append(str(exc)))
            bob.goto(url_b)
            bobs = _task(bob)
            assert bobs not in ("", third)
            page.keyboard.press("s")  # alice skips: the next free task, not bob's
            alices = _task(page, third)
            assert alices not in ("", third, bobs)
            bob.keyboard.press("a")
            page.keyboard.press("a")
            bob_next = _task(bob, bobs)  # bob holds it while alice works on
            current = _task(page, alices)
            version, rows = _verdicts(verdicts)
            assert version == 3 and {r["reviewer"] for r in rows if r["task_id"] == bobs} == {"bob"}
            assert {r["reviewer"] for r in rows if r["task_id"] == alices} == {"alice"}

            # alice skips the rest: "no more tasks", then `u` serves the skipped ones again
            bob_browser.close()
            while current:
                page.keyboard.press("s")
                current = _task(page, current)
            assert page.is_visible("#end") and not page.is_visible("#work")
            assert f"4 of {len(tasks)} tasks" in page.inner_text("#end") and "You skipped" in page.inner_text("#end")
            page.keyboard.press("u")
            assert _task(page, "") and page.is_visible("#work") and not page.is_visible("#end")
            assert errors == []
            browser.close()
        for proc in procs[1:]:  # a clean stop (SIGTERM) gives the leases back
            proc.terminate()
            assert proc.wait(15) == 0
        assert TaskLeases(mine.cfg.files_root, "probe").store.read(lease_name(bob_next)).content["released"]
    finally:
        for proc in procs:
            proc.kill()
