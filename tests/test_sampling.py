"""ISO 2859-1 single sampling: the packaged tables against published values, the table file's
validation, the seeded sample order, and the batch acceptance report on small task/verdict frames.

Sources of the expected values (each case names its own):
  [T1]  ISO 2859-1:1999 Table 1 = ANSI/ASQ Z1.4-2008 Table I (sample size code letters).
  [2A]  ISO 2859-1:1999 Table 2-A = Z1.4 Table II-A (single sampling, normal inspection).
  [2B]  ISO 2859-1:1999 Table 2-B = Z1.4 Table II-B (single sampling, tightened inspection).
  [MON] Montgomery, Introduction to Statistical Quality Control, MIL STD 105E example: N = 2000,
        AQL 0.65 %, level II -> code K; normal n = 125, c = 2; tightened n = 125, c = 1.
  [PLOS] Jenkins, Peck & Fernando, PLOS ONE 2023, OC-curve figure for ISO 2859-1:1999, lots of
        35 001 to 500 000, normal inspection: (AQL, level, n, Ac/Re) = (0.65, S-4, 80, 1/2),
        (0.65, S-3, 20, 0/1), (0.40, S-4, 125, 1/2), (0.40, S-3, 32, 0/1), (0.25, S-4, 50, 0/1),
        (0.15, S-4, 80, 0/1).
  [RULE] AQL Inspector's Rule notes for AQLs below 0.065: normal AQL 0.015 at letter R uses P,
        n = 800, 0/1; tightened AQL 0.025 at letter R uses n = 3150, 1/2.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import yaml

from facevid.udfs.curation.acceptance import batch_report, field_failures, latest_verdicts, markdown
from facevid.udfs.curation.sampling import (
    DEFAULT_PATH,
    build_tables,
    code_letter,
    load_tables,
    sample_order,
    single_plan,
)


@pytest.mark.parametrize(("lot", "level", "letter"), [
    (1000, "II", "J"),      # [T1] 501-1200
    (50, "II", "D"),        # [T1] 26-50
    (51, "II", "E"),        # [T1] 51-90
    (3200, "II", "K"),      # [T1] 1201-3200 (the upper bound of K's range)
    (3201, "II", "L"),      # [T1] 3201-10000
    (3500, "II", "L"),      # [T1] 3201-10000
    (500000, "III", "Q"),   # [T1] 150001-500000
    (500001, "III", "R"),   # [T1] 500001 and over
    (100000, "S-1", "D"),   # [T1] 35001-150000
    (2, "II", "A"),         # [T1] 2-8
    (8, "III", "B"),        # [T1] 2-8
    (280, "I", "E"),        # [T1] 151-280
    (281, "I", "F"),        # [T1] 281-500
    (10000, "S-3", "F"),    # [T1] 3201-10000
    (10001, "S-4", "H"),    # [T1] 10001-35000
    (10**9, "S-2", "E"),    # [T1] 500001 and over
])
def test_code_letters_match_table_1(lot: int, level: str, letter: str) -> None:
    assert code_letter(lot, level) == letter


# (lot, level, aql, inspection) -> (code letter, letter used, n, Ac, Re)
PUBLISHED = [
    ((1000, "II", 1.0, "normal"), ("J", "J", 80, 2, 3)),        # [2A] J, 1.0
    ((1000, "II", 0.65, "normal"), ("J", "J", 80, 1, 2)),       # [2A] J, 0.65
    ((1000, "II", 2.5, "normal"), ("J", "J", 80, 5, 6)),        # [2A] J, 2.5
    ((1000, "II", 4.0, "normal"), ("J", "J", 80, 7, 8)),        # [2A] J, 4.0
    ((1000, "II", 0.10, "normal"), ("J", "K", 125, 0, 1)),      # [2A] J, 0.10: down arrow to K's 0/1
    ((3200, "II", 2.5, "normal"), ("K", "K", 125, 7, 8)),       # [2A] K, 2.5
    ((3500, "II", 2.5, "normal"), ("L", "L", 200, 10, 11)),     # [2A] L, 2.5
    ((50, "II", 6.5, "normal"), ("D", "D", 8, 1, 2)),           # [2A] D, 6.5
    ((2000, "II", 0.65, "normal"), ("K", "K", 125, 2, 3)),      # [MON] normal
    ((2000, "II", 0.65, "tightened"), ("K", "K", 125, 1, 2)),   # [MON] tightened
    ((1000, "II", 1.0, "tightened"), ("J", "J", 80, 1, 2)),     # [2B] J, 1.0
    ((1000, "II", 2.5, "tightened"), ("J", "J", 80, 3, 4)),     # [2B] J, 2.5
    ((100000, "S-4", 0.65, "normal"), ("J", "J", 80, 1, 2)),    # [PLOS] (1)
    ((100000, "S-3", 0.65, "normal"), ("G", "F", 20, 0, 1)),    # [PLOS] (2): up arrow to F
    ((100000, "S-4", 0.40, "normal"), ("J", "K", 125, 1, 2)),   # [PLOS] (3): down arrow to K
    ((100000, "S-3", 0.40, "normal"), ("G", "G", 32, 0, 1)),    # [PLOS] (4)
    ((100000, "S-4", 0.25, "normal"), ("J", "H", 50, 0, 1)),    # [PLOS] (5): up arrow to H
    ((100000, "S-4", 0.15, "normal"), ("J", "J", 80, 0, 1)),    # [PLOS] (6)
    ((2000, "II", 15, "normal"), ("K", "J", 80, 21, 22)),       # [2A] K, 15: up arrow to J's 21/22
    ((100, "II", 250, "normal"), ("F", "E", 13, 44, 45)),       # [2A] F, 250: up arrow to E's 44/45
    ((600000, "III", 0.015, "normal"), ("R", "P", 800, 0, 1)),  # [RULE] normal R, 0.015
    ((600000, "III", 0.025, "tightened"), ("R", "S", 3150, 1, 2)),  # [RULE] tightened R, 0.025
    ((600000, "III", 0.010, "normal"), ("R", "Q", 1250, 0, 1)),  # [2A] R, 0.010: up arrow to Q
]


@pytest.mark.parametrize(("args", "expected"), PUBLISHED, ids=[f"{a}" for a, _ in PUBLISHED])
def test_single_plans_match_published_values(args: tuple, expected: tuple) -> None:
    lot, level, aql, inspection = args
    plan = single_plan(lot, aql, level, inspection)
    assert (plan.code_letter, plan.letter, plan.sample_size, plan.ac, plan.re) == expected
    assert not plan.full_inspection


def test_sample_size_at_or_above_the_lot_means_full_inspection() -> None:
    # lot 3, level II -> A; AQL 0.65 arrows down to F (n = 20 > 3): inspect all 3 with F's 0/1 [2A]
    plan = single_plan(3, 0.65)
    assert (plan.code_letter, plan.letter, plan.sample_size, plan.ac, plan.re) == ("A", "F", 3, 0, 1)
    assert plan.full_inspection and "100 % inspection" in plan.describe()
    # n equal to the lot: lot 13 at level III -> C; AQL 1.0 arrows down to E, n = 13 [2A]
    equal = single_plan(13, 1.0, "III")
    assert (equal.letter, equal.sample_size, equal.full_inspection) == ("E", 13, True)
    assert single_plan(14, 1.0, "III").full_inspection is False


def test_every_code_letter_and_aql_resolves_to_a_plan() -> None:
    """Walk every cell a lot can reach: a plan with 0 <= Ac < Re, n from the row the plan is in,
    and acceptance numbers that never fall when the AQL rises."""
    tables = load_tables()
    lots = [low for low, _, _ in tables.lots]
    for inspection in ("normal", "tightened"):
        for lot in lots:
            for level in ("S-1", "S-2", "S-3", "S-4", "I", "II", "III"):
                acs = [single_plan(lot, a, level, inspection).ac for a in tables.aql]
                assert acs == sorted(acs)
                for a in tables.aql:
                    p = single_plan(lot, a, level, inspection)
                    assert 0 <= p.ac < p.re and p.sample_size == min(
                        tables.sample_size[inspection][p.letter], lot)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: single_plan(1000, 0.5), "0.65"),                      # lists the valid AQLs
    (lambda: single_plan(1000, "abc"), "not a standard AQL"),
    (lambda: single_plan(1000, 1.0, "IV"), "S-1, S-2, S-3, S-4, I, II, III"),
    (lambda: single_plan(0, 1.0), "lot_size"),
    (lambda: single_plan(10.5, 1.0), "lot_size"),
    (lambda: single_plan(1000, 1.0, inspection="reduced"), "Table 2-C"),
])
def test_bad_arguments_are_clear_value_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()


def test_aql_and_level_spellings() -> None:
    assert single_plan(1000, "0.10") == single_plan(1000, 0.1)
    assert code_letter(1000, "ii") == "J" and code_letter(1, "II") == "A"


# --- the table file's validation -------------------------------------------------------------

@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))


def _edit(data: dict, edits: dict[str, object]) -> dict:
    """A deep copy of ``data`` with each ``"a/b/0"`` path set to its value."""
    d = copy.deepcopy(data)
    for path, value in edits.items():
        *keys, last = path.split("/")
        node = d
        for k in keys:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[int(last) if isinstance(node, list) else last] = value
    return d


def test_packaged_file_loads(raw: dict) -> None:
    tables = build_tables(raw, "iso2859_1.yml")
    assert len(tables.aql) == 26 and list(tables.plans) == ["normal", "tightened"]
    assert list(tables.plans["tightened"])[-1] == "S"


PLANS = "single/normal/plans"


@pytest.mark.parametrize(("edits", "key"), [
    ({f"{PLANS}/J/10": "3/3"}, "single.normal.plans.J[AQL 1]"),                  # Ac < Re
    ({f"{PLANS}/J/10": "x"}, "single.normal.plans.J[AQL 1]"),                    # not a cell
    ({f"{PLANS}/A/17": "3/4"}, "single.normal.plans.A[AQL 40]"),                 # Ac falls along a row
    ({f"{PLANS}/K/9": "1/2", f"{PLANS}/K/10": "1/2"}, "single.normal.plans.K[AQL 1]"),  # ... down a column
    ({f"{PLANS}/R/0": "↓"}, "single.normal.plans.R[AQL 0.01]"),                  # arrow off the table
    ({f"{PLANS}/J/7": "↓", f"{PLANS}/K/7": "↑"}, "single.normal.plans.J[AQL 0.25]"),  # arrows in a loop
    ({f"{PLANS}/J/10": "-"}, "single.normal.plans.J[AQL 1]"),                    # blank in a Table 1 row
    ({"single/tightened/plans/R/2": "↓↓"}, "single.tightened.plans.R[AQL 0.025]"),
    ({"single/tightened/plans/R/2": "-"}, "single.tightened.plans.R[AQL 0.025]"),  # blank in row R
    ({"single/tightened/plans/R/5": "↓"}, "single.tightened.plans.R[AQL 0.1]"),  # arrow to row S's blank
    ({"single/normal/sample_size/K": 70}, "single.normal.sample_size.K"),        # sizes increase
    ({"code_letters/lots/3/0": 27}, "code_letters.lots[3]"),                     # contiguous ranges
    ({"code_letters/lots/14/1": 900000}, "code_letters.lots[14]"),               # the last is open
    ({"code_letters/lots/5/7": "D"}, "code_letters.lots[5].II"),                 # letters never fall
    ({"code_letters/lots/5/7": "Z"}, "code_letters.lots[5].II"),                 # unknown letter
    ({"code_letters/levels": ["I", "II", "III"]}, "code_letters.levels"),
    ({"aql/3": 0.01}, "aql"),                                                    # increasing
])
def test_a_bad_table_file_names_the_key(raw: dict, edits: dict, key: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(f"iso2859_1.yml: {key}: ")):
        build_tables(_edit(raw, edits), "iso2859_1.yml")


def test_a_missing_row_or_key_is_named(raw: dict) -> None:
    broken = copy.deepcopy(raw)
    del broken["single"]["tightened"]["plans"]["M"], broken["single"]["tightened"]["sample_size"]["M"]
    with pytest.raises(ValueError, match=r"single\.tightened\.plans: no row for code letter\(s\) M"):
        build_tables(broken)
    with pytest.raises(ValueError, match=r"\(top\)"):
        build_tables({k: v for k, v in raw.items() if k != "aql"})
    with pytest.raises(ValueError, match="cannot read the sampling tables"):
        load_tables("/nonexistent/iso.yml")


# --- the seeded sample order -----------------------------------------------------------------

def test_sample_order_is_seeded_stable_and_uniform() -> None:
    ids = [f"static:clip{i:03d}" for i in range(40)]
    ranks = sample_order(ids, seed=7)
    assert sorted(ranks) == list(range(40)) and ranks == sample_order(ids, seed=7)
    assert ranks != sample_order(ids, seed=8)
    # adding tasks and shuffling the input never reorders the existing ones
    more = ids[::-1] + [f"static:new{i}" for i in range(15)]
    again = dict(zip(more, sample_order(more, seed=7), strict=True))
    assert sorted(ids, key=lambda t: again[t]) == sorted(ids, key=lambda t: ranks[ids.index(t)])
    # each task is drawn first about equally often over seeds (expected 400 of 2000)
    firsts = [sample_order(ids[:5], seed=s).index(0) for s in range(2000)]
    assert all(300 < firsts.count(i) < 500 for i in range(5))
    with pytest.raises(ValueError, match="duplicate task ids: a"):
        sample_order(["a", "b", "a"], seed=1)


# --- the batch report ------------------------------------------------------------------------

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def make_tasks(batch: str, kind: str, lot: int, fields: list[str], seed: int = 3) -> pd.DataFrame:
    ids = [f"{kind}:{batch}-c{i:02d}" for i in range(lot)]
    return pd.DataFrame({
        "task_id": ids, "kind": kind, "batch_id": batch, "clip_id": [t.split(":")[1] for t in ids],
        "fields": [list(fields)] * lot, "lot_size": lot, "sample_rank": sample_order(ids, seed)})


def by_rank(tasks: pd.DataFrame, batch: str) -> list[str]:
    """The batch's clip ids in draw order (the first n are the sample)."""
    return list(tasks[tasks["batch_id"] == batch].sort_values("sample_rank")["clip_id"])


def verdict_rows(clips: list[str], fields: list[str], verdict: str = "accept", minutes: int = 0) -> list[dict]:
    return [{"clip_id": c, "field": f, "verdict": verdict, "reviewed_at": T0 + timedelta(minutes=minutes)}
            for c in clips for f in fields]


STATIC = ["ethnicity", "appearance", "age"]


def test_accept_reject_early_reject_and_incomplete() -> None:
    # lot 50, level II, AQL 6.5 -> D, n = 8, Ac 1, Re 2 [2A]
    tasks = pd.concat([make_tasks(b, "static", 50, STATIC) for b in ("acc", "rej", "early", "open")])
    v = []
    acc = by_rank(tasks, "acc")
    v += verdict_rows(acc[:8], STATIC) + verdict_rows(acc[:1], ["age"], "correct", 1)  # 1 defect
    v += verdict_rows(acc[8:12], STATIC, "correct")  # outside the sample: not counted
    rej = by_rank(tasks, "rej")
    v += verdict_rows(rej[:8], STATIC) + verdict_rows(rej[2:4], ["ethnicity"], "correct", 1)
    early = by_rank(tasks, "early")
    v += verdict_rows(early[:3], STATIC) + verdict_rows(early[:2], ["appearance", "age"], "correct", 2)
    opened = by_rank(tasks, "open")
    v += verdict_rows(opened[:5], STATIC) + verdict_rows(opened[:1], ["age"], "correct", 1)
    v += verdict_rows(opened[5:6], ["ethnicity"], "correct")  # sampled, not fully reviewed
    report = batch_report(tasks, pd.DataFrame(v), aql=6.5, level="II").set_index("batch_id")
    assert (report[["code_letter", "n", "ac", "re"]] == ["D", 8, 1, 2]).all(axis=None)
    assert report.loc["acc", ["inspected", "defects", "decision"]].tolist() == [8, 1, "accept"]
    assert report.loc["rej", ["inspected", "defects", "decision"]].tolist() == [8, 2, "reject"]
    assert report.loc["early", ["inspected", "defects", "decision"]].tolist() == [3, 2, "reject"]
    assert report.loc["open", ["inspected", "defects", "decision"]].tolist() == [
        5, 1, "incomplete (5 of 8 inspected)"]


def test_latest_verdict_per_clip_and_field_wins() -> None:
    tasks = make_tasks("b1", "dynamic", 50, ["action", "emotion"])  # n = 8, Ac 1, Re 2 at AQL 6.5
    clips = by_rank(tasks, "b1")[:8]
    v = verdict_rows(clips, ["action", "emotion"])
    # clip 0: corrected, then accepted later -> fine; clips 1 and 2: accepted, then corrected -> defects.
    # Rows are appended out of time order: the time decides, not the row order.
    v = verdict_rows(clips[:1], ["emotion"], "accept", 9) + v + verdict_rows(clips[:1], ["emotion"], "correct", 5)
    v += verdict_rows(clips[1:3], ["action"], "correct", 7)
    report = batch_report(tasks, pd.DataFrame(v), aql=6.5).iloc[0]
    assert (report["inspected"], report["defects"], report["decision"]) == (8, 2, "reject")
    latest = latest_verdicts(pd.DataFrame(v)).set_index(["clip_id", "field"])["verdict"]
    assert latest[(clips[0], "emotion")] == "accept" and latest[(clips[1], "action")] == "correct"
    # same time: the row appended later wins
    tie = pd.DataFrame(verdict_rows(clips[:1], ["action"], "correct") + verdict_rows(clips[:1], ["action"]))
    assert latest_verdicts(tie)["verdict"].tolist() == ["accept"]


def test_restoration_rejects_are_defects_and_full_inspection() -> None:
    # lot 3, level II -> A, AQL 0.65 arrows to F (n = 20 > 3): all 3 inspected, Ac 0, Re 1
    tasks = make_tasks("r1", "restoration", 3, ["restoration"])
    clips = by_rank(tasks, "r1")
    ok = batch_report(tasks, pd.DataFrame(verdict_rows(clips, ["restoration"])), aql=0.65).iloc[0]
    assert (ok["n"], ok["ac"], ok["re"], ok["inspected"], ok["decision"]) == (3, 0, 1, 3, "accept")
    v = verdict_rows(clips[:2], ["restoration"]) + verdict_rows(clips[2:], ["restoration"], "reject")
    bad = batch_report(tasks, pd.DataFrame(v), aql=0.65).iloc[0]
    assert (bad["defects"], bad["decision"]) == (1, "reject")


def test_field_failures_rank_fields_and_markdown() -> None:
    tasks = pd.concat([make_tasks("s1", "static", 50, STATIC), make_tasks("d1", "dynamic", 50, ["action", "emotion"])])
    s, d = by_rank(tasks, "s1"), by_rank(tasks, "d1")
    v = verdict_rows(s[:10], STATIC) + verdict_rows(s[:4], ["age"], "correct", 1)
    v += verdict_rows(s[:1], ["ethnicity"], "correct", 1)
    v += verdict_rows(d[:8], ["action", "emotion"]) + verdict_rows(d[:3], ["emotion"], "correct", 1)
    v += verdict_rows(s[40:41], ["age"], "accept")  # a partly reviewed task still counts per field
    failures = field_failures(tasks, pd.DataFrame(v))
    s1 = failures[failures["batch_id"] == "s1"]
    assert s1["field"].tolist() == ["age", "ethnicity", "appearance"]
    assert s1[["reviewed", "corrected"]].values.tolist() == [[11, 4], [10, 1], [10, 0]]
    assert s1["correction_rate"].iloc[0] == pytest.approx(4 / 11)
    d1 = failures[failures["batch_id"] == "d1"]
    assert d1["field"].tolist() == ["emotion", "action"] and d1["kind"].unique().tolist() == ["dynamic"]
    report = batch_report(tasks, pd.DataFrame(v), aql=6.5)
    text = markdown(report, failures)
    assert "| d1    | dynamic | 50  | D n=8 Ac 1 Re 2 | 8         | 3       | reject   |" in text
    assert "- s1: age 4/11 (36%), ethnicity 1/10 (10%)" in text and "appearance 0/" not in text
    assert markdown(batch_report(tasks.iloc[:0], pd.DataFrame(v), aql=6.5)) == "No review batches.\n"


def test_report_input_errors() -> None:
    tasks = make_tasks("b", "static", 10, STATIC)
    with pytest.raises(ValueError, match="unknown value\\(s\\) maybe"):
        batch_report(tasks, pd.DataFrame(verdict_rows(["b-c00"], ["age"], "maybe")), aql=1.0)
    with pytest.raises(ValueError, match="tasks: missing column\\(s\\) sample_rank"):
        batch_report(tasks.drop(columns="sample_rank"), pd.DataFrame(verdict_rows([], [])), aql=1.0)
    with pytest.raises(ValueError, match="batch b has lot sizes \\[5\\] for 10 task rows"):
        batch_report(tasks.assign(lot_size=5), pd.DataFrame(verdict_rows(["b-c00"], ["age"])), aql=1.0)
    with pytest.raises(ValueError, match="not a standard AQL"):
        batch_report(tasks, pd.DataFrame(verdict_rows(["b-c00"], ["age"])), aql=3.0)


def test_report_reads_tables_as_delta_returns_them(tmp_path) -> None:
    """The frames as a Delta round trip gives them (fields as Arrow arrays, UTC timestamps)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from facevid.udfs.curation.review_schema import VERDICT_SCHEMA

    tasks = make_tasks("dynamic-2026-05-01", "dynamic", 50, ["action", "emotion"])
    clips = by_rank(tasks, "dynamic-2026-05-01")
    rows = verdict_rows(clips[:8], ["action", "emotion"]) + verdict_rows(clips[:1], ["action"], "correct", 1)
    verdicts = pd.DataFrame([{**r, "verdict_id": f"v{i}", "task_id": f"dynamic:{r['clip_id']}", "kind": "dynamic",
                              "batch_id": "dynamic-2026-05-01", "model_value": "[]", "reviewer_value": "[]",
                              "reviewer": "ana", "tasks_version": 3, "session_id": "s1"} for i, r in enumerate(rows)])
    write_deltalake(tmp_path / "tasks", pa.Table.from_pandas(
        tasks.assign(sample_rank=tasks["sample_rank"].astype("int32"), lot_size=tasks["lot_size"].astype("int32")),
        preserve_index=False))
    write_deltalake(tmp_path / "verdicts", pa.Table.from_pandas(verdicts, schema=VERDICT_SCHEMA, preserve_index=False))
    read_tasks = DeltaTable(str(tmp_path / "tasks")).to_pandas()
    read_verdicts = DeltaTable(str(tmp_path / "verdicts")).to_pandas()
    assert not isinstance(read_tasks["fields"].iloc[0], list)  # Arrow list -> numpy array
    report = batch_report(read_tasks, read_verdicts, aql=6.5).iloc[0]
    assert (report["n"], report["inspected"], report["defects"], report["decision"]) == (8, 8, 1, "accept")
