"""``facevid``: run the declared pipeline, show its state, query the lake with SQL.

Every command takes ``--config FILE`` (default ./pipeline.yml), ``--lake PATH_OR_URI``,
``--files PATH_OR_URI`` (where crops, leases, validation results and the report go), ``--engine`` and
``--set KEY=VALUE``. Exit status: 0 success, 2 bad config or input (one line on stderr), 3 the gold gate
failed (nothing committed; the validation JSON says which expectation), 4 a table is being
written by another run (one line naming the holder; nothing was written), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from facevid.jobs.config import ConfigError, PipelineConfig, load_config
from facevid.jobs.lease import LeaseHeld, LeaseLost
from facevid.jobs.stages.base import GateError

EPILOG = """examples:
  facevid run                                  # all stages declared in ./pipeline.yml
  facevid run --source ~/videos --stages ingest,probe
  facevid status --lake s3://bucket/lake
  facevid sql "SELECT source, count(*) n, round(sum(duration_s)/3600, 2) hours
               FROM bronze_videos WHERE error IS NULL GROUP BY source"
  facevid sql --format csv "SELECT rule, count(*) FROM quarantine GROUP BY rule"
  facevid history silver.faces
  facevid run --retry-errors timeout             # re-queue error rows of one category (or all)
  facevid maintain                               # compact every table, vacuum files older than 7 days
  facevid report --out card/                       # the dataset card: card/index.html + plots
  facevid train -P steps=300                     # mlflow_projects/finetune on gold (tiny CPU model by default)
  facevid evaluate -P model_uri=models:/facevid-video/1   # mlflow_projects/evaluate -> meta.evaluations
  facevid export --format finetrainers           # gold train split at its current version, for CogVideoX trainers
  facevid review --reviewer alice                # the review page at http://127.0.0.1:8765/ (verdicts to the lake)
  facevid run --lake uc:main.facevid --files /Volumes/main/facevid/files   # Unity Catalog: tables + a files root
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="pipeline.yml", help="pipeline declaration (default: ./pipeline.yml)")
    p.add_argument("--lake", help="lake root: a directory, s3://bucket/prefix or uc:catalog.schema (overrides config)")
    p.add_argument("--files", help="files root for crops, gate results, the report, leases and in-flight records: "
                   "a directory, s3://, dbfs:/ or /Volumes/... (default: the lake root; required for a uc: lake; "
                   "env FACEVID_FILES)")
    p.add_argument("--engine", help="auto (default) | local (embedded Sail) | local-cluster (Sail with "
                   "worker tasks) | spark (native session) | sc://host:port")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a pipeline.yml value (repeatable), e.g. "
                   "stages.embed.params.model_path=/Volumes/main/facevid/models/dlib/x.dat")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for a table another run is writing (default 0: exit 4 at once)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facevid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run stages incrementally (only rows whose input or stage changed)",
                         description="Run the declared stages in dependency order, each holding its output "
                         "table's lease. A stage processes the input rows whose content fingerprint, or the "
                         "stage's version/params, changed since their output row was written, plus transient "
                         "errors with attempts left; pending keys run on the executors in chunks of "
                         "resources.commit_rows, each published with one MERGE: a killed run resumes where "
                         "it stopped. Output rows whose input is gone are removed.")
    _common(run)
    run.add_argument("--source", action="append", metavar="PATH_OR_URI",
                     help="input folder or s3:// prefix; repeatable; replaces the config's sources")
    run.add_argument("--stages", help="comma-separated stage names, e.g. ingest,probe (default: all, in dependency order)")
    run.add_argument("--allow-shrink", action="store_true",
                     help="let gold drop more than gold.params.gate.max_shrink (default 5%%) of its published clips")
    run.add_argument("--retry-errors", nargs="?", const="*", action="append", metavar="CATEGORY",
                     help="also re-run error rows (of CATEGORY, e.g. decode or timeout; repeatable; all errors "
                     "without a value), whatever their attempts")
    status = sub.add_parser("status", help="per-table rows, errors, Delta version, pending and stale work",
                            description="Per stage: output rows and error rows, input keys pending (new, "
                            "changed upstream, or transient errors with attempts left), stale output rows "
                            "(produced from an older input or stage version, or whose input is gone), and "
                            "the table's Delta version.")
    _common(status)
    status.add_argument("--source", action="append", metavar="PATH_OR_URI", help="as for run (pending ingest)")
    sql = sub.add_parser("sql", help="run SQL over the lake; tables are views named <layer>_<table>")
    _common(sql)
    sql.add_argument("query", help="SQL text, e.g. \"SELECT * FROM silver_faces LIMIT 5\"")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
    sql.add_argument("--max-rows", type=int, default=1000, help="rows printed in table format (default 1000)")
    maint = sub.add_parser("maintain", help="compact small files (OPTIMIZE) and VACUUM unreferenced ones",
                           description="Holding every table's lease (so no run writes meanwhile), compact each "
                           "table's small files and vacuum files no version within the retention still "
                           "references (delta-rs on paths, SQL OPTIMIZE/VACUUM on Unity Catalog).")
    _common(maint)
    maint.add_argument("--retain-hours", type=int, default=168,
                       help="keep files referenced by versions younger than this (default 168 = 7 days; "
                       "time travel to older versions stops working; under 168 needs --force)")
    maint.add_argument("--force", action="store_true", help="allow --retain-hours under 168")
    rep = sub.add_parser("report", help="write the dataset card (HTML + PNG plots) from the lake's tables",
                         description="Hours and clips per source and split, duration/resolution/faces "
                         "histograms, quality scores with the gold thresholds drawn, clips per identity with "
                         "the cap, the funnel of quarantine rules, example frames per bucket, and lineage.")
    _common(rep)
    rep.add_argument("--out", help="output folder: a directory, /Volumes/..., dbfs:/ or s3:// "
                     "(default: <files root>/_report, i.e. <lake>/_report for a path lake)")
    rep.add_argument("--examples", type=int, default=4, help="example frames per bucket (default 4)")
    from facevid.jobs.ml.cli import add_parsers
    from facevid.jobs.review.cli import add_parser as add_review_parser

    add_parsers(sub, _common)
    add_review_parser(sub, _common)
    hist = sub.add_parser("history", help="Delta commit history of one table (e.g. silver.faces)")
    _common(hist)
    hist.add_argument("table")
    hist.add_argument("--limit", type=int, default=20)
    return parser


@contextmanager
def _session(cfg: PipelineConfig, args: argparse.Namespace | None = None) -> Iterator[Any]:
    from facevid.jobs.engine import start_engine
    from facevid.jobs.lake import Lake
    from facevid.jobs.runner import Context

    engine = start_engine(cfg.engine)
    try:
        yield Context(cfg=cfg, engine=engine, lake=Lake(engine.spark, cfg.lake),
                      wait_s=float(getattr(args, "wait", 0.0) or 0.0))
    finally:
        engine.stop()


def _tables(cfg: PipelineConfig) -> list[str]:
    return [s.output for s in cfg.ordered()]


def cmd_run(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    from facevid.jobs.runner import run_pipeline

    names = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    preflight(cfg, names)  # stage names, model weights: fail before starting the engine
    with _session(cfg, args) as ctx:
        ctx.retry = set(args.retry_errors) if args.retry_errors else None
        ctx.allow_shrink = args.allow_shrink
        reports = run_pipeline(ctx, names, log=lambda m: print(m, flush=True))
    print(f"\n{'stage':<10} {'pending':>8} {'rows':>7} {'errors':>7} {'chunks':>6} {'commits':>7} {'pruned':>6} "
          f"{'seconds':>8}  output version")
    for r in reports:
        print(f"{r.stage:<10} {r.pending:>8} {r.rows:>7} {r.errors:>7} {r.chunks:>6} {r.commits:>7} {r.pruned:>6} "
              f"{r.seconds:>8.1f}  {r.output_version}")
    return 0


def preflight(cfg: PipelineConfig, names: list[str] | None) -> None:
    """Checks that need no engine, for the stages about to run: the names exist, and each op's
    own ``preflight(spec)`` (e.g. the embed stage's model weights) passes."""
    from facevid.jobs.runner import op_for

    for spec in cfg.ordered(names):
        check = getattr(op_for(spec), "preflight", None)
        if check is not None:
            check(spec)


def cmd_status(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    from pyspark.sql import functions as F

    from facevid.jobs.quarantine import quarantine_frame
    from facevid.jobs.runner import op_for, pending_frame, stale_frame
    from facevid.jobs.stages.base import TableOp

    with _session(cfg, args) as ctx:
        print(f"lake: {cfg.lake}  engine: {ctx.engine.kind}")
        print(f"{'stage':<10} {'table':<18} {'v':>3} {'rows':>7} {'errors':>7} {'pending':>8} {'stale':>6} {'delta':>6}")
        for spec in cfg.ordered():
            op = op_for(spec)
            rows = errors = 0
            if ctx.lake.exists(spec.output):
                cur = ctx.current(spec.output)
                rows, errors = cur.count(), cur.filter(F.col("error").isNotNull()).count()
            ready = all(ctx.lake.exists(t) for t in spec.inputs)
            pending: Any = "-"
            stale: Any = "-"
            if isinstance(op, TableOp):  # rebuilt as a whole on every run
                pending = "table" if ready else "-"
            elif ready:
                inp = op.input_frame(ctx, spec)
                pending = pending_frame(ctx, spec, op, inp).count()
                stale = stale_frame(ctx, spec, op, inp).count() if ctx.lake.exists(spec.output) else 0
            version = ctx.lake.version(spec.output)
            print(f"{spec.name:<10} {spec.output:<18} {spec.version:>3} {rows:>7} {errors:>7} {pending:>8} "
                  f"{stale:>6} {'-' if version is None else version:>6}")
        quarantine = quarantine_frame(ctx)
        if quarantine is not None:
            print(f"{'':<10} {'quarantine (view)':<18} {'':>3} {quarantine.count():>7}")
        if ctx.lake.exists("meta.runs"):
            print(f"{'':<10} {'meta.runs':<18} {'':>3} {ctx.lake.read('meta.runs').count():>7}")
    return 0


def cmd_sql(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    from facevid.jobs.quarantine import register_views

    with _session(cfg, args) as ctx:
        views = register_views(ctx)
        if not views:
            raise ConfigError(f"the lake at {cfg.lake} has no tables yet: run `facevid run` first")
        try:
            pdf = ctx.spark.sql(args.query).toPandas()  # bounded: the user's own query result, which the CLI prints
        except Exception as exc:  # engine's analysis errors are user input errors here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"SQL failed: {first} (views: {', '.join(views)})") from exc
    if args.format == "csv":
        pdf.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(pdf.to_json(orient="records", date_format="iso", default_handler=str))
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", args.max_rows, "display.max_columns", None,
                               "display.width", 200, "display.max_colwidth", 60):
            print(pdf.to_string(index=False, max_rows=args.max_rows) if len(pdf) else "(no rows)")
            print(f"({len(pdf)} rows)")
    return 0


def cmd_history(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    with _session(cfg, args) as ctx:
        if not ctx.lake.exists(args.table):
            raise ConfigError(f"no table {args.table} in {cfg.lake}")
        for h in ctx.lake.history(args.table, args.limit):
            print(json.dumps({k: h.get(k) for k in ("version", "timestamp", "operation", "operationMetrics")},
                             default=str))
    return 0


def cmd_maintain(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    from facevid.jobs.lake import SYSTEM_TABLES
    from facevid.jobs.runner import side_tables

    if args.retain_hours < 168 and not args.force:
        raise ConfigError(f"--retain-hours {args.retain_hours} is under 168 (7 days): time travel and runs still "
                          "reading older versions would break; pass --force to do it anyway")
    with _session(cfg, args) as ctx:
        tables = [t for t in dict.fromkeys(_tables(cfg) + side_tables(cfg) + list(SYSTEM_TABLES)) if ctx.lake.exists(t)]
        leases = []
        try:
            for table in tables:  # no run writes a table while it is compacted
                leases.append(ctx.lease(table, command="maintain"))
            print(f"{'table':<16} {'files -':>8} {'files +':>8} {'vacuumed':>9}")
            for table in tables:
                metrics = ctx.lake.optimize(table)
                removed = ctx.lake.vacuum(table, retention_hours=args.retain_hours)
                print(f"{table:<16} {metrics.get('numFilesRemoved', '-'):>8} {metrics.get('numFilesAdded', '-'):>8} "
                      f"{len(removed):>9}")
            _sweep_artifacts(ctx, tables, args.retain_hours)
        finally:
            for lease in leases:
                lease.release()
    return 0


def write_report(ctx: Any, out: str, examples: int) -> str:
    """Build the dataset card into ``out`` (a directory, /Volumes/..., dbfs:/ or s3://); returns the
    page's URI. An s3:// card is built in a temporary folder, then uploaded file by file."""
    import tempfile
    from pathlib import Path

    from facevid.jobs.report_html import build_report
    from facevid.udfs.media.storage import is_s3, put_file, to_local

    if not is_s3(out):
        return str(build_report(ctx, to_local(out), examples))
    with tempfile.TemporaryDirectory(prefix="facevid-report-") as tmp:
        build_report(ctx, tmp, examples)
        for f in sorted(Path(tmp).iterdir()):
            put_file(f, f"{out.rstrip('/')}/{f.name}")
    return f"{out.rstrip('/')}/index.html"


ARTIFACT_OPS = ("crops.write", "restore.faces")  # stages that write immutable files under params.dir
ARTIFACT_COLUMNS = ("crop_uri", "restored_uri", "unrestored_uri")  # columns that reference them


def _sweep_artifacts(ctx: Any, tables: list[str], retain_hours: int) -> None:
    """Delete artifact files (crops, restored crops) that no table version within the retention references."""
    from facevid.jobs.lake import storage_options
    from facevid.udfs.media.artifacts import referenced_by, sweep

    roots = [ctx.cfg.file_uri(s.params.dir) for s in ctx.cfg.stages.values() if s.op in ARTIFACT_OPS]
    if not roots:
        return
    if ctx.lake.catalog:
        print("artifacts: not swept on a Unity Catalog lake (table versions are read by path)")
        return
    pairs = [(ctx.lake.location(t), c) for t in tables for c in ARTIFACT_COLUMNS if c in ctx.lake.read(t).columns]
    refs = referenced_by(pairs, retain_hours, storage_options(ctx.lake.root))
    for root in roots:
        print(f"artifacts: {len(sweep(root, refs, retain_hours, dry_run=False))} unreferenced files swept in {root}")


def cmd_report(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    out = args.out or cfg.file_uri("_report")  # an explicit --out is relative to the working directory
    with _session(cfg, args) as ctx:
        page = write_report(ctx, out, args.examples)
    print(f"dataset card: {page}")
    return 0


def _ml_command(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    from facevid.jobs.ml.cli import COMMANDS as ML

    return ML[args.command](cfg, args)


def _review_command(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    from facevid.jobs.review.cli import cmd_review

    return cmd_review(cfg, args)


COMMANDS = {"run": cmd_run, "report": cmd_report, "status": cmd_status, "sql": cmd_sql, "history": cmd_history,
            "maintain": cmd_maintain, "train": _ml_command, "evaluate": _ml_command, "export": _ml_command,
            "review": _review_command}


EXITS = ((ConfigError, "error", 2, ""), (GateError, "gate failed", 3, ""), (LeaseHeld, "busy", 4, ""),
         (LeaseLost, "stopped", 4, "; nothing more was committed"))  # exception -> (prefix, exit status, tail)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, lake=args.lake, sources=getattr(args, "source", None), engine=args.engine,
                          files=args.files, overrides=args.overrides)
        return COMMANDS[args.command](cfg, args)
    except (ConfigError, GateError, LeaseHeld, LeaseLost) as exc:
        word, code, tail = next(rest for kind, *rest in EXITS if isinstance(exc, kind))
        print(f"facevid: {word}: {exc}{tail}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("facevid: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script / Databricks wheel-task entry point: the exit status is the process's."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
