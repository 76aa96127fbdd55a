"""``mlflow_projects/evaluate`` entry point ``mos``: people's ratings (MOS) into MLflow and meta.evaluations.

Reads a ratings CSV (``facevid.udfs.metrics.mos``: long or wide format, every bad line one error naming
it), aggregates per (model, dataset, criterion) with a confidence interval (a two-way raters x videos
bootstrap by default), logs the paper's Table 3 layout (``table3.md``/``.csv``) and the long summary
to the active MLflow run, and appends one ``meta.evaluations`` row per (model, dataset, criterion) with
``metric = mos_<criterion>`` (its interval, raters, videos and method in ``settings``), so people's
ratings sit beside FID/FVD/CLIPScore in one table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pyarrow as pa

from facevid.jobs.ml.params import MOS, add_arguments
from facevid.jobs.ml.tracking import TAG, log_params_once, setup_tracking


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facevid.jobs.ml.mos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, MOS)
    args = parser.parse_args(argv)
    import mlflow

    from facevid.jobs.ml.evaluations import append, evaluation_rows, markdown
    from facevid.udfs.metrics.mos import MosSpec, aggregate, mos_table, read_ratings

    try:
        criteria = tuple(c.strip() for c in args.criteria.split(",") if c.strip())
        spec = MosSpec(criteria=criteria, scale=(args.scale_min, args.scale_max), method=args.method,
                       level=args.level, seed=args.seed)
        summary = aggregate(read_ratings(args.ratings, spec), spec)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mos: error: {exc}", file=sys.stderr)
        return 2
    setup_tracking(args.lake, args.files or None)
    with mlflow.start_run() as run, tempfile.TemporaryDirectory(prefix="facevid-mos-") as tmp:
        log_params_once({p.name: getattr(args, p.name) for p in MOS})
        mlflow.set_tag(f"{TAG}.project", "mos")
        table = mos_table(summary, criteria)
        (Path(tmp) / "table3.md").write_text(markdown(table.to_dict("records")))
        table.to_csv(Path(tmp) / "table3.csv", index=False)
        summary.to_csv(Path(tmp) / "mos_summary.csv", index=False)
        mlflow.log_artifacts(tmp)
        rows = []
        for r in summary.itertuples():  # one row per (model, dataset, criterion); its interval in settings
            meta = {"run_id": run.info.run_id, "model_uri": str(r.model), "dataset": str(r.dataset),
                    "videos": int(r.videos), "settings": {"ci_low": r.ci_low, "ci_high": r.ci_high,
                                                          "raters": int(r.raters), "videos": int(r.videos),
                                                          "level": r.level, "method": r.method}}
            rows.append(evaluation_rows(meta, {f"mos_{r.criterion}": {"value": r.mean, "n": int(r.n)}}))
        version = append(args.lake, args.files or args.lake, pa.concat_tables(rows), run.info.run_id)
        mlflow.set_tag(f"{TAG}.evaluations_version", str(version))
        print(table.to_string(index=False))
        print(json.dumps({"run_id": run.info.run_id, "groups": int(summary.groupby(["model", "dataset"]).ngroups)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
