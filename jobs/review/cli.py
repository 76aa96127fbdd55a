"""``facevid review``: serve the review page for one reviewer over a path lake's review tables.

The server is the standard library's WSGI server with a thread per request, bound to 127.0.0.1 by
default; it prints its URL (flushed) once it listens, and gives back its task leases when it stops
(Ctrl-C or SIGTERM). A killed server needs nothing: every verdict it answered is committed, and its
leases are free at once for a server restarted on the same host.
"""

from __future__ import annotations

import argparse
import signal
import sys
import uuid
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from facevid.jobs.config import ConfigError, PipelineConfig
from facevid.udfs.curation.review_schema import KINDS

LOOPBACK = ("127.0.0.1", "localhost")


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``review`` subcommand (``common``: the --config/--lake/--files/... flags)."""
    p = sub.add_parser("review", help="the review web page: accept or correct annotations, verdicts to the lake",
                       description="Serve a local web page that shows gold.review_tasks one at a time (its "
                       "frames and the model's annotation) and appends the reviewer's verdicts to "
                       "review.verdicts, one Delta commit per submitted task. Tasks are leased, so two "
                       "reviewers never get the same one. Keys: a accept all and submit, Enter submit, "
                       "s skip.")
    common(p)
    p.add_argument("--reviewer", help="your name, recorded with every verdict (required; letters, digits, . _ @ -)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--kind", choices=KINDS, help="only tasks of this kind")
    p.add_argument("--batch", metavar="BATCH_ID", help="only tasks of this labelling batch")
    p.add_argument("--report", action="store_true",
                   help="print, per labelling batch, its ISO 2859-1 acceptance decision and the fields reviewers "
                   "correct most (no page; no --reviewer needed)")
    p.add_argument("--aql", type=float, help="with --report: the AQL in %% nonconforming (default: "
                   "stages.review_tasks.params.aql)")
    p.add_argument("--level", help="with --report: the inspection level S-1..S-4, I, II, III (default: "
                   "stages.review_tasks.params.inspection_level)")


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per request; closing waits for the requests in flight (a submit being committed)."""

    block_on_close = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No access log: the page polls."""


def review_vocabulary(cfg: PipelineConfig) -> Any:
    """The fields' options: the review stage's ``vocabulary_path``, else the caption stage's vocabulary
    (the packaged DH-FaceVid-1K table without either)."""
    from facevid.jobs.gate import caption_vocabulary
    from facevid.udfs.annotate.vocabulary import load_vocabulary
    from facevid.udfs.curation.review_tasks import ReviewParams

    path = next((s.params.vocabulary_path for s in cfg.stages.values()
                 if isinstance(s.params, ReviewParams) and s.params.vocabulary_path), None)
    try:
        return load_vocabulary(path) if path else caption_vocabulary(cfg)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def make_review_server(app: Any, host: str, port: int) -> WSGIServer:
    """A threaded WSGI server for ``app`` listening on ``host:port`` (0: any free port); on a loopback
    address the app answers only loopback ``Host`` headers of that port."""
    try:
        httpd = make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if host in LOOPBACK:
        app.hosts = {f"{h}:{httpd.server_port}" for h in LOOPBACK}
    return httpd


def cmd_review(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    """Serve the page until interrupted (other modes of ``facevid review``, e.g. a report, branch
    off here before the reviewer is required)."""
    from facevid.jobs.review.app import ReviewApp
    from facevid.jobs.review.leases import TaskLeases
    from facevid.jobs.review.logic import check_reviewer
    from facevid.jobs.review.store import ReviewStore

    if args.report:
        return _report(cfg, args)
    try:
        reviewer = check_reviewer(args.reviewer)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: give 0-65535 (0 = any free port)")
    session_id = uuid.uuid4().hex[:12]
    store = ReviewStore(cfg.lake, cfg.files_root, session_id, wait_s=max(float(args.wait or 0.0), 30.0))
    store.check()
    app = ReviewApp(store, TaskLeases(cfg.files_root, session_id), review_vocabulary(cfg), reviewer, session_id,
                    kind=args.kind, batch=args.batch)
    httpd = make_review_server(app, args.host, args.port)
    url = f"http://{args.host}:{httpd.server_port}/"
    version, tasks, _ = store.refresh()
    print(f"facevid review: {url}  (reviewer {reviewer}, session {session_id}, {len(tasks)} tasks at "
          f"{store.tasks_table.path} v{version}; Ctrl-C stops)", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("facevid review: stopped", file=sys.stderr, flush=True)
    finally:
        httpd.server_close()
        app.release_all()
    return 0


def _report(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    """``--report``: the acceptance report (Markdown) on stdout; exit 0 whatever the decisions."""
    from facevid.jobs.cli import _session as session
    from facevid.jobs.review.report import review_report

    with session(cfg, args) as ctx:
        try:
            text, _ = review_report(ctx, args.aql, args.level)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    print(text, end="", flush=True)
    return 0


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt
