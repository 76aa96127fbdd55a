"""``facevid``: run the declared pipeline, show its state, query the lake with SQL.

Every command takes ``--config FILE`` (default ./pipeline.yml), ``--lake PATH_OR_URI``,
``--files PATH_OR_URI`` (where crops, validation results and the report go), ``--engine`` and
``--set KEY=VALUE``. Exit status: 0 success, 2 bad config or input (one line on stderr), 3 the gold gate
failed (nothing committed; the validation JSON says which expectation), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jobs.config import ConfigError, PipelineConfig, load_config
from jobs.stages.base import GateError

EPILOG = """examples:
  facevid run                                  # all stages declared in ./pipeline.yml
  facevid run --source ~/videos --stages ingest,probe
  facevid status --lake s3://bucket/lake
  facevid sql "SELECT source, count(*) n, round(sum(duration_s)/3600, 2) hours
               FROM bronze_videos WHERE error IS NULL GROUP BY source"
  facevid sql --format csv "SELECT rule, count(*) FROM quarantine GROUP BY rule"
  facevid history silver.faces
  facevid maintain --retain-hours 0                # compact every table, drop unreferenced files
  facevid report --out card/                       # the dataset card: card/index.html + plots
  facevid run --lake uc:main.facevid --files /Volumes/main/facevid/files   # Unity Catalog: tables + a files root
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="pipeline.yml", help="pipeline declaration (default: ./pipeline.yml)")
    p.add_argument("--lake", help="lake root: a directory, s3://bucket/prefix or uc:catalog.schema (overrides config)")
    p.add_argument("--files", help="files root for crops, gate results and the report: a directory, s3://, dbfs:/ "
                   "or /Volumes/... (default: the lake root; required for a uc: lake; env FACEVID_FILES)")
    p.add_argument("--engine", help="auto (default) | local (embedded Sail) | spark (native session) | sc://host:port")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a pipeline.yml value (repeatable), e.g. "
                   "stages.embed.params.model_path=/Volumes/main/facevid/models/dlib/x.dat")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facevid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run stages incrementally (only work not done yet at each stage version)",
                         description="Run the declared stages in dependency order. Each stage processes only "
                         "input keys without an output row at its current version, committing one Delta "
                         "append per batch: a killed run resumes where it stopped.")
    _common(run)
    run.add_argument("--source", action="append", metavar="PATH_OR_URI",
                     help="input folder or s3:// prefix; repeatable; replaces the config's sources")
    run.add_argument("--stages", help="comma-separated stage names, e.g. ingest,probe (default: all, in dependency order)")
    status = sub.add_parser("status", help="per-table rows, errors, Delta version and pending work",
                            description="Per stage: output rows and error rows at the current version, input "
                            "keys still pending, and the table's Delta version.")
    _common(status)
    status.add_argument("--source", action="append", metavar="PATH_OR_URI", help="as for run (pending ingest)")
    sql = sub.add_parser("sql", help="run SQL over the lake; tables are views named <layer>_<table>")
    _common(sql)
    sql.add_argument("query", help="SQL text, e.g. \"SELECT * FROM silver_faces LIMIT 5\"")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
    sql.add_argument("--max-rows", type=int, default=1000, help="rows printed in table format (default 1000)")
    maint = sub.add_parser("maintain", help="compact small files (OPTIMIZE) and VACUUM unreferenced ones",
                           description="Compact each table's small files (every batch commit adds one) and "
                           "vacuum files no version within the retention still references (delta-rs on "
                           "paths, SQL OPTIMIZE/VACUUM on Unity Catalog).")
    _common(maint)
    maint.add_argument("--retain-hours", type=int, default=168,
                       help="keep files referenced by versions younger than this (default 168 = 7 days; "
                       "time travel to older versions stops working)")
    rep = sub.add_parser("report", help="write the dataset card (HTML + PNG plots) from the lake's tables",
                         description="Hours and clips per source and split, duration/resolution/faces "
                         "histograms, quality scores with the gold thresholds drawn, clips per identity with "
                         "the cap, the funnel of quarantine rules, example frames per bucket, and lineage.")
    _common(rep)
    rep.add_argument("--out", help="output folder: a directory, /Volumes/..., dbfs:/ or s3:// "
                     "(default: <files root>/_report, i.e. <lake>/_report for a path lake)")
    rep.add_argument("--examples", type=int, default=4, help="example frames per bucket (default 4)")
    hist = sub.add_parser("history", help="Delta commit history of one table (e.g. silver.faces)")
    _common(hist)
    hist.add_argument("table")
    hist.add_argument("--limit", type=int, default=20)
    return parser


@contextmanager
def _session(cfg: PipelineConfig) -> Iterator[Any]:
    from jobs.engine import start_engine
    from jobs.lake import Lake
    from jobs.runner import Context

    engine = start_engine(cfg.engine)
    try:
        yield Context(cfg=cfg, engine=engine, lake=Lake(engine.spark, cfg.lake))
    finally:
        engine.stop()


def _tables(cfg: PipelineConfig) -> list[str]:
    return [s.output for s in cfg.ordered()]


def cmd_run(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    from jobs.runner import run_pipeline

    names = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    preflight(cfg, names)  # stage names, model weights: fail before starting the engine
    with _session(cfg) as ctx:
        reports = run_pipeline(ctx, names, log=lambda m: print(m, flush=True))
    print(f"\n{'stage':<10} {'pending':>8} {'rows':>7} {'errors':>7} {'chunks':>6} {'seconds':>8}  output version")
    for r in reports:
        print(f"{r.stage:<10} {r.pending:>8} {r.rows:>7} {r.errors:>7} {r.chunks:>6} {r.seconds:>8.1f}  {r.output_version}")
    return 0


def preflight(cfg: PipelineConfig, names: list[str] | None) -> None:
    """Checks that need no engine, for the stages about to run: the names exist, and each op's
    own ``preflight(spec)`` (e.g. the embed stage's model weights) passes."""
    from jobs.runner import op_for

    for spec in cfg.ordered(names):
        check = getattr(op_for(spec), "preflight", None)
        if check is not None:
            check(spec)


def cmd_status(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    from pyspark.sql import functions as F

    from jobs.runner import op_for, pending_frame
    from jobs.stages.base import TableOp

    with _session(cfg) as ctx:
        print(f"lake: {cfg.lake}  engine: {ctx.engine.kind}")
        print(f"{'stage':<10} {'table':<16} {'v':>3} {'rows':>7} {'errors':>7} {'pending':>8} {'delta':>6}")
        for spec in cfg.ordered():
            op = op_for(spec)
            rows = errors = 0
            if ctx.lake.exists(spec.output):
                cur = ctx.current(spec.output)
                rows, errors = cur.count(), cur.filter(F.col("error").isNotNull()).count()
            upstream_ready = all(ctx.lake.exists(t) for t in spec.inputs)
            if isinstance(op, TableOp):  # rebuilt as a whole on every run
                pending: Any = "table" if upstream_ready else "-"
            else:
                pending = pending_frame(ctx, spec, op, op.input_frame(ctx, spec)).count() if upstream_ready else "-"
            version = ctx.lake.version(spec.output)
            print(f"{spec.name:<10} {spec.output:<16} {spec.version:>3} {rows:>7} {errors:>7} {pending:>8} "
                  f"{'-' if version is None else version:>6}")
        for table in ("quarantine", "meta.runs"):
            if ctx.lake.exists(table):
                print(f"{'':<10} {table:<16} {'':>3} {ctx.lake.read(table).count():>7}")
    return 0


def cmd_sql(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    with _session(cfg) as ctx:
        views = ctx.lake.register_views(_tables(cfg))
        if not views:
            raise ConfigError(f"the lake at {cfg.lake} has no tables yet: run `facevid run` first")
        try:
            pdf = ctx.spark.sql(args.query).toPandas()
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
    with _session(cfg) as ctx:
        if not ctx.lake.exists(args.table):
            raise ConfigError(f"no table {args.table} in {cfg.lake}")
        for h in ctx.lake.history(args.table, args.limit):
            print(json.dumps({k: h.get(k) for k in ("version", "timestamp", "operation", "operationMetrics")},
                             default=str))
    return 0


def cmd_maintain(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    from jobs.lake import SYSTEM_TABLES

    with _session(cfg) as ctx:
        print(f"{'table':<16} {'files -':>8} {'files +':>8} {'vacuumed':>9}")
        for table in dict.fromkeys(_tables(cfg) + list(SYSTEM_TABLES)):
            if not ctx.lake.exists(table):
                continue
            metrics = ctx.lake.optimize(table)
            removed = ctx.lake.vacuum(table, retention_hours=args.retain_hours)
            print(f"{table:<16} {metrics.get('numFilesRemoved', '-'):>8} {metrics.get('numFilesAdded', '-'):>8} "
                  f"{len(removed):>9}")
    return 0


def write_report(ctx: Any, out: str, examples: int) -> str:
    """Build the dataset card into ``out`` (a directory, /Volumes/..., dbfs:/ or s3://); returns the
    page's URI. An s3:// card is built in a temporary folder, then uploaded file by file."""
    import tempfile
    from pathlib import Path

    from jobs.report_html import build_report
    from udfs.storage import is_s3, put_file, to_local

    if not is_s3(out):
        return str(build_report(ctx, to_local(out), examples))
    with tempfile.TemporaryDirectory(prefix="facevid-report-") as tmp:
        build_report(ctx, tmp, examples)
        for f in sorted(Path(tmp).iterdir()):
            put_file(f, f"{out.rstrip('/')}/{f.name}")
    return f"{out.rstrip('/')}/index.html"


def cmd_report(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    out = args.out or cfg.file_uri("_report")  # an explicit --out is relative to the working directory
    with _session(cfg) as ctx:
        page = write_report(ctx, out, args.examples)
    print(f"dataset card: {page}")
    return 0


COMMANDS = {"run": cmd_run, "report": cmd_report, "status": cmd_status, "sql": cmd_sql, "history": cmd_history, "maintain": cmd_maintain}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, lake=args.lake, sources=getattr(args, "source", None), engine=args.engine,
                          files=args.files, overrides=args.overrides)
        return COMMANDS[args.command](cfg, args)
    except ConfigError as exc:
        print(f"facevid: error: {exc}", file=sys.stderr)
        return 2
    except GateError as exc:
        print(f"facevid: gate failed: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("facevid: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script / Databricks wheel-task entry point: the exit status is the process's."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
