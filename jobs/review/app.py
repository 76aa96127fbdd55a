"""``facevid review``'s web page: a WSGI app (standard library only) over the lake's review tables.

Routes: ``GET /`` the page (and its ``/page.js``, ``/page.css``), ``GET /api/task`` the session's
task (leased to it) with its fields, options and model values and the progress of the filter,
``GET /frame?task=ID&n=K`` the task's K-th frame as a JPEG,
``POST /api/submit`` ``{"task_id", "values": {field: value}}`` (verdict rows appended in one
commit before the answer; 400 and nothing written on a bad value), ``POST /api/skip`` and
``/api/ping`` ``{"task_id"}`` (release / renew the lease), ``POST /api/unskip`` (serve the
session's skipped tasks again). A browser session is a cookie ``<reviewer>.<token>``; POSTs must be
JSON, and on a loopback address only a loopback ``Host`` is answered (no DNS rebinding).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from facevid.jobs.review.frames import FrameCache
from facevid.jobs.review.leases import TaskLeases
from facevid.jobs.review.logic import check_reviewer, done_ids, field_spec, model_values, select, verdict_rows
from facevid.jobs.review.store import ReviewStore

COOKIE = "facevid_review"
_TOKEN = re.compile(r"[0-9a-f]{32}")
STATIC = Path(__file__).with_name("static")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
PING_S = 60
MAX_BODY = 1 << 20


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 415: "Unsupported Media Type",
            500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Session:
    """One browser: its reviewer, the lease holder name, its current task and what it skipped."""

    key: str
    reviewer: str
    holder: str
    current: str | None = None
    skipped: set[str] = field(default_factory=set)


class ReviewApp:
    """The page's WSGI application for one reviewer default, one task filter and one server run."""

    def __init__(self, store: ReviewStore, leases: TaskLeases, vocab: Any, reviewer: str, session_id: str,
                 kind: str | None = None, batch: str | None = None, frames: FrameCache | None = None,
                 hosts: Iterable[str] | None = None) -> None:
        self.store, self.leases, self.vocab = store, leases, vocab
        self.reviewer, self.session_id = check_reviewer(reviewer), session_id
        self.kind, self.batch = kind, batch
        self.frames = frames or FrameCache()
        self.hosts = set(hosts) if hosts is not None else None  # allowed Host headers (None: any)
        self.sessions: dict[str, Session] = {}
        self._sessions_mu = threading.Lock()
        self._queue_mu = threading.Lock()  # picking tasks and changing a session's task or skips
        self._submit_mu = threading.Lock()

    # -- WSGI -------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        headers: list[tuple[str, str]] = []
        try:
            if self.hosts is not None and environ.get("HTTP_HOST", "") not in self.hosts:
                raise HttpError(403, "unexpected Host header: open the URL the server printed")
            session, cookie = self._session(environ)
            if cookie:
                headers.append(("Set-Cookie", cookie))
            status, ctype, body, extra = self._route(environ, session)
            headers += extra
        except HttpError as exc:
            status, ctype, body = exc.status, "application/json", json.dumps({"error": str(exc)}).encode()
        except Exception as exc:  # a bug or a broken table: the page shows it, the server keeps serving
            traceback.print_exc()
            status, ctype = 500, "application/json"
            body = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        headers += [("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
        start_response(f"{status} {_REASONS.get(status, '')}", headers)
        return [body]

    def _session(self, environ: dict[str, Any]) -> tuple[Session, str | None]:
        """The browser's session from its cookie; a new one, and its Set-Cookie value, for a new
        browser or a cookie of another reviewer (the server's ``--reviewer`` is the name)."""
        jar = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        key = jar[COOKIE].value if COOKIE in jar else ""
        with self._sessions_mu:
            if key in self.sessions:
                return self.sessions[key], None
            name, _, token = key.rpartition(".")
            if name != self.reviewer or not _TOKEN.fullmatch(token):
                token = secrets.token_hex(16)
            key = f"{self.reviewer}.{token}"  # a known token after a restart keeps its cookie
            session = self.sessions[key] = Session(key, self.reviewer, f"{self.session_id}/{token}")
        return session, f"{COOKIE}={key}; Path=/; HttpOnly; SameSite=Strict"

    def _route(self, environ: dict[str, Any], s: Session) -> tuple[int, str, bytes, list[tuple[str, str]]]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        if method == "GET":
            if path == "/":
                return 200, _TYPES[".html"], (STATIC / "page.html").read_bytes(), []
            if path in ("/page.js", "/page.css"):
                return 200, _TYPES[Path(path).suffix], (STATIC / path[1:]).read_bytes(), []
            if path == "/api/task":
                return self._json(self.task_payload(s))
            if path == "/frame":
                query = parse_qs(environ.get("QUERY_STRING", ""))
                return 200, "image/jpeg", self.frame(query.get("task", [""])[0], query.get("n", ["0"])[0]), []
            raise HttpError(404, f"no page {path}")
        if method != "POST":
            raise HttpError(405, f"{method} is not supported")
        actions = {"/api/submit": self.submit, "/api/skip": self.skip, "/api/ping": self.ping,
                   "/api/unskip": self.unskip}
        if path not in actions:
            raise HttpError(404, f"no action {path}")
        return self._json(actions[path](s, _body(environ)))

    @staticmethod
    def _json(payload: dict[str, Any]) -> tuple[int, str, bytes, list[tuple[str, str]]]:
        return 200, "application/json", json.dumps(payload, default=str).encode(), []

    # -- the queue --------------------------------------------------------------------------
    def _state(self) -> tuple[int, dict[str, dict[str, Any]], list[dict[str, Any]], set[str]]:
        version, tasks, reviewed = self.store.refresh()
        queue = select(tasks.values(), self.kind, self.batch)
        return version, tasks, queue, done_ids(queue, reviewed)

    def next_task(self, s: Session) -> tuple[dict[str, Any] | None, list[dict[str, Any]], set[str]]:
        """The session's task: the one it holds if still open, else the first open task in queue
        order that it did not skip and whose lease it gets."""
        with self._queue_mu:
            _, tasks, queue, done = self._state()
            if s.current is not None:
                task = tasks.get(s.current)
                if task is not None and s.current not in done and self.leases.take(s.current, s.holder, s.reviewer):
                    return task, queue, done
                s.current = None
            for task in queue:
                tid = task["task_id"]
                if tid not in done and tid not in s.skipped and self.leases.take(tid, s.holder, s.reviewer):
                    s.current = tid
                    return task, queue, done
            return None, queue, done

    def task_payload(self, s: Session) -> dict[str, Any]:
        task, queue, done = self.next_task(s)
        with self._queue_mu:
            skipped = len(s.skipped - done)
        out: dict[str, Any] = {"reviewer": s.reviewer, "progress": {"done": len(done), "total": len(queue)},
                               "filter": {"kind": self.kind, "batch": self.batch}, "ping_s": PING_S,
                               "skipped": skipped, "task": None}
        if task is None:
            return out
        model = model_values(task)
        out["task"] = {
            **{k: task.get(k) for k in ("task_id", "kind", "batch_id", "clip_id", "source", "identity_id",
                                        "flags", "priority", "in_sample", "sample_rank")},
            "frames": [{"url": f"/frame?task={_q(task['task_id'])}&n={n}", "label": label}
                       for n, label in enumerate(_frame_labels(task))],
            "fields": [{"name": f, "options": list(spec.options), "many": spec.many,
                        "restoration": spec.restoration, "model_value": model.get(f)}
                       for f, spec in ((f, field_spec(f, self.vocab)) for f in task["fields"] or [])],
        }
        return out

    # -- actions ----------------------------------------------------------------------------
    def submit(self, s: Session, body: dict[str, Any]) -> dict[str, Any]:
        """Validate the values, take (or keep) the task's lease, append its verdict rows in one
        commit, release the lease; answers only once the commit is durable."""
        values = body.get("values")
        if not isinstance(values, dict):
            raise HttpError(400, "expected {\"task_id\": ..., \"values\": {field: value}}")
        from facevid.jobs.lease import LeaseHeld

        with self._submit_mu:  # checked and appended as one step: a double submit writes once
            version, tasks, _, done = self._state()
            task = self._task(tasks, body)
            if task["task_id"] in done:
                raise HttpError(409, f"task {task['task_id']} has been reviewed already")
            try:
                rows = verdict_rows(task, values, self.vocab, reviewer=s.reviewer, session_id=self.session_id,
                                    tasks_version=version)
            except ValueError as exc:
                raise HttpError(400, str(exc)) from None
            if not self.leases.take(task["task_id"], s.holder, s.reviewer):
                raise HttpError(409, f"task {task['task_id']} is being reviewed by someone else")
            try:
                verdicts_version = self.store.append(rows)
            except LeaseHeld as exc:
                raise HttpError(503, f"the verdicts table is busy, try again: {exc}") from None
        self._release(s, task["task_id"])
        return {"written": len(rows), "verdicts_version": verdicts_version,
                "verdicts": {r["field"]: r["verdict"] for r in rows}}

    def skip(self, s: Session, body: dict[str, Any]) -> dict[str, Any]:
        task = self._task(self.store.refresh()[1], body)
        self._release(s, task["task_id"])
        with self._queue_mu:
            s.skipped.add(task["task_id"])
        return {"skipped": task["task_id"]}

    def ping(self, s: Session, body: dict[str, Any]) -> dict[str, Any]:
        task = self._task(self.store.refresh()[1], body)
        return {"held": self.leases.take(task["task_id"], s.holder, s.reviewer)}

    def unskip(self, s: Session, body: dict[str, Any]) -> dict[str, Any]:
        with self._queue_mu:
            count = len(s.skipped)
            s.skipped.clear()
        return {"unskipped": count}

    def _release(self, s: Session, task_id: str) -> None:
        self.leases.release(task_id, s.holder)
        with self._queue_mu:
            if s.current == task_id:
                s.current = None

    def release_all(self) -> None:
        """Give back every lease this server's sessions hold (a clean shutdown)."""
        with self._sessions_mu, self._queue_mu:
            held = [(s.current, s.holder) for s in self.sessions.values() if s.current]
        for task_id, holder in held:
            self.leases.release(task_id, holder)

    @staticmethod
    def _task(tasks: dict[str, dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        task = tasks.get(str(body.get("task_id")))
        if task is None:
            raise HttpError(409, f"no task {body.get('task_id')!r} in the current tasks table")
        return task

    def frame(self, task_id: str, n: str) -> bytes:
        """The ``n``-th frame the task shows (restoration: 0 = before, 1 = after)."""
        task = self.store.refresh()[1].get(task_id)
        if task is None or not n.isdigit():
            raise HttpError(404, f"no frame {n} of task {task_id!r}")
        sources = _frame_sources(task)
        if int(n) >= len(sources):
            raise HttpError(404, f"task {task_id} has {len(sources)} frames")
        uri, index = sources[int(n)]
        from facevid.udfs.base import StageError

        try:
            jpeg = self.frames.get(uri, index, [i for u, i in sources if u == uri])
        except StageError as exc:
            raise HttpError(404, f"cannot decode {uri}: {exc}") from None
        if jpeg is None:
            raise HttpError(404, f"{uri} has no frame {index}")
        return jpeg


def _frame_sources(task: dict[str, Any]) -> list[tuple[str, int]]:
    """``(uri, frame number)`` of each frame a task shows: a restoration task the first of its
    frames before (``before_uri``) and after (``media_uri``), the others ``frame_index`` of ``media_uri``."""
    indices = [int(i) for i in task.get("frame_index") or [0]]
    if task["kind"] == "restoration" and task.get("before_uri"):
        return [(task["before_uri"], indices[0]), (task["media_uri"], indices[0])]
    return [(task["media_uri"], i) for i in indices]


def _frame_labels(task: dict[str, Any]) -> list[str]:
    if task["kind"] == "restoration" and task.get("before_uri"):
        return ["before restoration", "after restoration"]
    times = list(task.get("frame_t") or [])
    return [f"frame {i}" + (f" · {times[k]:.2f} s" if k < len(times) and times[k] is not None else "")
            for k, i in enumerate(task.get("frame_index") or [0])]


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _body(environ: dict[str, Any]) -> dict[str, Any]:
    if not environ.get("CONTENT_TYPE", "").startswith("application/json"):
        raise HttpError(415, "send JSON (Content-Type: application/json)")
    size = int(environ.get("CONTENT_LENGTH") or 0)
    if size > MAX_BODY:
        raise HttpError(413, "request too large")
    try:
        body = json.loads(environ["wsgi.input"].read(size) or b"{}")
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, "expected a JSON object")
    return body
