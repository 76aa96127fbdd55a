"""The Great Expectations gate: suites as data (``expectations/*.yml``), run on the engine.

A suite file names a table and a list of expectations::

    table: silver.identities
    expectations:
      - expectation: expect_column_values_to_be_between   # any GX 1.x expectation, snake_case
        kwargs: {column: identity_clips, max_value: "${gate.identity_max_clips}", mostly: "${gate.silver_identity_share}"}
        severity: warn            # error (default) blocks the gold commit; warn is reported only
        why: paper - >=95% of clips come from identities with <= 10 clips

``${a.b}`` reads the gold stage's params, ``${stages.<stage>.<param>}`` any stage's, so suites
cannot drift from ``pipeline.yml``. The gold
suite also gets one expectation per declared rule on a column gold carries. Validation runs through GX's Spark datasource on
the engine's DataFrames (verified on Sail's Spark Connect and native Spark). The gold candidate is
checked with two columns the gate computes itself: ``gate_identity_clips`` (clips per identity)
and ``gate_identity_splits`` (splits per identity). Results go to ``<files root>/_validation/``
(``result_dir``; the files root is the lake root of a path lake, ``files:`` of a ``uc:`` lake).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from facevid.jobs.config import ConfigError, StageSpec
from facevid.jobs.stages.base import GateError

_PLACEHOLDER = re.compile(r"\$\{([a-zA-Z0-9_.]+)\}")
_lock = threading.Lock()
_gx: dict[str, Any] = {}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _lookup(params: Any, dotted: str) -> Any:
    value = params
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            raise ConfigError(f"expectations: ${{{dotted}}} names no gold parameter")
    return value


def render(obj: Any, params: Any) -> Any:
    """Replace ``${name}`` placeholders with gold params (a whole-string placeholder keeps its type)."""
    if isinstance(obj, dict):
        return {k: render(v, params) for k, v in obj.items()}
    if isinstance(obj, list):
        return [render(v, params) for v in obj]
    if isinstance(obj, str):
        whole = _PLACEHOLDER.fullmatch(obj)
        if whole:
            return _lookup(params, whole.group(1))
        return _PLACEHOLDER.sub(lambda m: str(_lookup(params, m.group(1))), obj)
    return obj


def load_suite(path: Path, params: Any) -> dict[str, Any]:
    """Read and render one suite file; every expectation must name a GX 1.x expectation."""
    import great_expectations as gx

    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or "table" not in doc or not isinstance(doc.get("expectations"), list):
        raise ConfigError(f"{path}: a suite needs `table` and a list of `expectations`")
    items = []
    for i, item in enumerate(doc["expectations"]):
        name = item.get("expectation", "") if isinstance(item, dict) else ""
        if not hasattr(gx.expectations, _camel(name)):
            raise ConfigError(f"{path}: expectations[{i}]: unknown expectation {name!r}")
        if item.get("severity", "error") not in ("error", "warn"):
            raise ConfigError(f"{path}: expectations[{i}]: severity must be error or warn")
        items.append({"expectation": name, "kwargs": render(item.get("kwargs") or {}, params),
                      "severity": item.get("severity", "error"), "why": item.get("why", "")})
    return {"suite": path.stem, "table": doc["table"], "expectations": items}


def rule_expectations(params: Any, columns: Any) -> list[dict[str, Any]]:
    """One gold expectation per declared selection rule whose column gold carries (gold must
    satisfy what selected it). A rule with ``when`` is checked on ``gate_rule_<name>``, its column
    where the condition holds and null elsewhere (``with_gate_columns``)."""
    out = []
    for rule in params.rules.values():
        if rule.column not in columns or (rule.when and rule.when not in columns):
            continue
        column = f"gate_rule_{rule.name}" if rule.when else rule.column
        if rule.is_null is not None and rule.when:
            continue  # null means "not judged" in a conditional column
        if rule.is_null is not None:
            name = "expect_column_values_to_be_null" if rule.is_null else "expect_column_values_to_not_be_null"
            kwargs: dict[str, Any] = {"column": column}
        else:
            name, kwargs = "expect_column_values_to_be_between", {"column": column}
            kwargs.update({k: v for k, v in (("min_value", rule.min), ("max_value", rule.max)) if v is not None})
        out.append({"expectation": name, "kwargs": kwargs, "severity": "error", "why": f"rule {rule.name}"})
    return out


def _context() -> Any:
    """One ephemeral GX context per process, without progress bars or analytics."""
    with _lock:
        if "ctx" not in _gx:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx = gx.get_context(mode="ephemeral")
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            asset = ctx.data_sources.add_spark("facevid").add_dataframe_asset("table")
            _gx.update(ctx=ctx, batch=asset.add_batch_definition_whole_dataframe("whole"), n=0)
        return _gx


def validate_frame(df: Any, suite: dict[str, Any]) -> dict[str, Any]:
    """Validate a Spark DataFrame against a rendered suite; JSON-ready result per expectation."""
    import great_expectations as gx

    g = _context()
    with _lock:
        g["n"] += 1
        gx_suite = gx.ExpectationSuite(name=f"{suite['suite']}_{g['n']}")
        for i, item in enumerate(suite["expectations"]):
            cls = getattr(gx.expectations, _camel(item["expectation"]))
            gx_suite.add_expectation(cls(**item["kwargs"], meta={"facevid_index": i}))
    result = g["batch"].get_batch(batch_parameters={"dataframe": df}).validate(gx_suite)
    by_index = {res.expectation_config.meta["facevid_index"]: res for res in result.results}  # GX reorders
    results = []
    for i, item in enumerate(suite["expectations"]):
        res = by_index[i]
        r = res.result or {}
        exc = res.exception_info or {}
        raised = exc.get("raised_exception") if isinstance(exc, dict) else False
        results.append({**item, "success": bool(res.success),
                        "observed_value": r.get("observed_value"), "unexpected_count": r.get("unexpected_count"),
                        "unexpected_percent": r.get("unexpected_percent"),
                        "partial_unexpected_list": r.get("partial_unexpected_list"),
                        "exception": exc.get("exception_message") if raised else None})
    failed = [r for r in results if not r["success"]]
    return {"suite": suite["suite"], "table": suite["table"],
            "success": not any(r["severity"] == "error" for r in failed), "results": results}


def with_gate_columns(sdf: Any, rules: Any = (), vocabulary: dict[str, list[str]] | None = None) -> Any:
    """The candidate plus what the gate computes itself rather than trusting it: per-identity clip
    and split counts, ``gate_rule_<name>`` for conditional rules, and ``gate_<attr>_outside`` (array
    elements outside the vocabulary) for each array attribute gold carries."""
    from pyspark.sql import functions as F

    per = sdf.groupBy("identity_id").agg(F.count("*").alias("gate_identity_clips"),
                                         F.countDistinct("split").alias("gate_identity_splits"))
    out = sdf.join(per, on="identity_id", how="left")
    for rule in rules:
        if rule.when and {rule.when, rule.column} <= set(sdf.columns):
            out = out.withColumn(f"gate_rule_{rule.name}", F.when(F.col(rule.when), F.col(rule.column)))
    types = dict(sdf.dtypes)
    for attr, options in (vocabulary or {}).items():
        if types.get(attr, "").startswith("array"):
            outside = F.size(F.filter(F.col(attr), _not_in(options)))
            out = out.withColumn(f"gate_{attr}_outside", F.coalesce(outside, F.lit(0)))
    return out


def _not_in(options: list[str]) -> Any:
    return lambda x: ~x.isin(*options)


def caption_vocabulary(cfg: Any) -> Any:
    """The ``Vocabulary`` the caption stage of ``cfg`` uses (the packaged one without it)."""
    from facevid.udfs.annotate.captioner import CaptionParams
    from facevid.udfs.annotate.vocabulary import load_vocabulary

    path = next((s.params.vocabulary_path for s in cfg.stages.values() if isinstance(s.params, CaptionParams)),
                None)
    return load_vocabulary(path)


def gate_vocabulary(ctx: Any) -> dict[str, list[str]]:
    """Options per attribute of the vocabulary the caption stage uses (the packaged one without it)."""
    return {name: list(a.options) for name, a in caption_vocabulary(ctx.cfg).attributes.items()}


def _write_result(ctx: Any, spec: StageSpec, doc: dict[str, Any]) -> str:
    """Write the result JSON (a timestamped file and ``latest.json``) under ``result_dir`` (relative:
    under the files root); returns the file's URI."""
    from facevid.udfs.media.storage import put_file

    base = ctx.cfg.file_uri(spec.params.result_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{spec.output}/{stamp}_{ctx.run_id or 'adhoc'}.json"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tmp:
        tmp.write(json.dumps(doc, indent=2, default=str))
    try:
        for target in (f"{base}/{name}", f"{base}/{spec.output}/latest.json"):
            put_file(tmp.name, target)  # S3 upload, or a local / /Volumes / dbfs:/ copy
    finally:
        os.unlink(tmp.name)
    return f"{base}/{name}"


def shrink_check(ctx: Any, spec: StageSpec, candidate: pd.DataFrame) -> dict[str, Any]:
    """Gold must not lose more than ``gate.max_shrink`` of the clips it publishes now (a half-run
    reprocessing upstream, a bad threshold) unless the run says ``--allow-shrink``."""
    limit = spec.params.gate.max_shrink
    published = (set(r[0] for r in ctx.current(spec.output).select("clip_id").collect())  # bounded: gold ids (the candidate is on the driver too)
                 if ctx.lake.exists(spec.output) else set())
    dropped = len(published - set(candidate["clip_id"]))
    share = dropped / len(published) if published else 0.0
    ok = share <= limit or bool(getattr(ctx, "allow_shrink", False))
    message = (f"gold.shrink: the candidate drops {dropped} of the {len(published)} published clips "
               f"({share:.1%} > gate.max_shrink {limit:.0%}); pass --allow-shrink if that is intended")
    return {"success": ok, "dropped": dropped, "published": len(published), "share": share, "max_shrink": limit,
            "allowed": bool(getattr(ctx, "allow_shrink", False)), "message": None if ok else message}


def gate_gold(ctx: Any, spec: StageSpec, candidate: pd.DataFrame) -> dict[str, Any]:
    """Run the bronze/silver/gold suites; raise ``GateError`` (nothing committed) on an error."""
    params = spec.params
    if not params.expectations_path:
        shrink = shrink_check(ctx, spec, candidate)
        if not shrink["success"]:
            raise GateError(spec.name, shrink["message"], "-")
        return {"success": True, "suites": [], "shrink": shrink}
    vocabulary = gate_vocabulary(ctx)
    root = {**vars(params), "stages": {n: s.params for n, s in ctx.cfg.stages.items()}, "vocabulary": vocabulary}
    from facevid.jobs.stages.gold.select import GOLD_COLUMNS

    schema = ", ".join(f"{c} {t}" for c, t in GOLD_COLUMNS.items())
    gold_sdf = with_gate_columns(ctx.spark.createDataFrame(candidate[list(GOLD_COLUMNS)], schema),
                                 params.rules.values(), vocabulary)
    reports = []
    folder = Path(params.expectations_path)
    for name in params.gate.suites or sorted(p.stem for p in folder.glob("*.yml")):
        path = folder / f"{name}.yml"
        if not path.is_file():
            raise ConfigError(f"gate suite {name}: {path} not found")
        suite = load_suite(path, root)
        if suite["table"] == spec.output:
            suite["expectations"] += rule_expectations(params, GOLD_COLUMNS)
            df, version = gold_sdf, "candidate"
        elif ctx.lake.exists(suite["table"]):
            df, version = ctx.current(suite["table"]), ctx.lake.version(suite["table"])
        else:
            raise ConfigError(f"gate suite {name}: table {suite['table']} does not exist in {ctx.cfg.lake}")
        reports.append({**validate_frame(df, suite), "table_version": version})
    failed = [f"{r['suite']}: {x['expectation']}({json.dumps(x['kwargs'], default=str)})"
              for r in reports for x in r["results"] if not x["success"] and x["severity"] == "error"]
    shrink = shrink_check(ctx, spec, candidate)
    if not shrink["success"]:
        failed.insert(0, shrink["message"])
    doc = {"stage": spec.name, "output": spec.output, "run_id": ctx.run_id, "success": not failed,
           "failed": failed, "candidate_rows": len(candidate), "shrink": shrink, "suites": reports}
    uri = _write_result(ctx, spec, doc)
    if failed:
        raise GateError(spec.name, f"{len(failed)} expectation(s) failed, gold not committed: {failed[0]}", uri)
    return doc
