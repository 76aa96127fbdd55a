"""ISO 2859-1 single sampling plans by attributes, from the standard's tables kept as data.

``data/iso2859_1.yml`` holds Table 1 (sample size code letters), Table 2-A (normal inspection) and
Table 2-B (tightened inspection) with their arrows; ``load_tables`` validates it and fails with a
``ValueError`` naming the file and the key. ``single_plan`` reads a plan the way the standard says:
the lot size and inspection level give a code letter (Table 1); the code letter's row and the AQL's
column give either a plan (Ac, Re) or an arrow, followed to the first plan below or above it, and
the sample size is that plan's row's, not the code letter's. When the sample size equals or exceeds
the lot size the whole lot is inspected (``Plan.full_inspection``), with the same Ac and Re.

``sample_order`` draws the sample: a seeded, reproducible random order of a lot's task ids in which
adding or removing tasks never reorders the others, so the first ``n`` of any lot are a simple random
sample of it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

import yaml

from facevid.udfs.base import file_version

DEFAULT_PATH = Path(__file__).with_name("data") / "iso2859_1.yml"
LEVELS = ("S-1", "S-2", "S-3", "S-4", "I", "II", "III")
INSPECTIONS = ("normal", "tightened")
DOWN, UP, BLANK = "↓", "↑", "-"
_TOP_KEYS = {"code_letters", "aql", "single"}
_TABLE_KEYS = {"sample_size", "plans"}

Cell = tuple[int, int] | str | None  # (Ac, Re), DOWN, UP or None (no plan)


@dataclass(frozen=True)
class Tables:
    """The validated tables: lot ranges ``(low, high or None, {level: letter})``, the AQL columns and,
    per inspection, the sample size and the row of cells of every letter (in table order)."""

    lots: tuple[tuple[int, int | None, dict[str, str]], ...]
    aql: tuple[float, ...]
    sample_size: dict[str, dict[str, int]]
    plans: dict[str, dict[str, tuple[Cell, ...]]]


@dataclass(frozen=True)
class Plan:
    """A single sampling plan for one lot: ``code_letter`` from Table 1, ``letter`` the row where the
    plan was found after following arrows, ``sample_size`` n (the lot size under 100 % inspection),
    accept the lot with at most ``ac`` nonconforming items in the sample, reject it with ``re``."""

    lot_size: int
    aql: float
    level: str
    inspection: str
    code_letter: str
    letter: str
    sample_size: int
    ac: int
    re: int
    full_inspection: bool

    def describe(self) -> str:
        """One line, e.g. ``lot 1000, level II, AQL 0.1 normal: J -> K, n=125, Ac 0, Re 1``."""
        via = self.code_letter if self.letter == self.code_letter else f"{self.code_letter} -> {self.letter}"
        full = " (100 % inspection: n >= lot size)" if self.full_inspection else ""
        return (f"lot {self.lot_size}, level {self.level}, AQL {self.aql:g} {self.inspection}: {via}, "
                f"n={self.sample_size}, Ac {self.ac}, Re {self.re}{full}")


def load_tables(path: str | os.PathLike[str] | None = None) -> Tables:
    """The tables in ``path`` (default: the packaged ``data/iso2859_1.yml``), validated; cached per
    file and modification time."""
    return _load(*file_version(path, DEFAULT_PATH, "the sampling tables"))


@lru_cache(maxsize=4)
def _load(path: str, _mtime_ns: int, _size: int) -> Tables:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    return build_tables(data, Path(path).name)


def code_letter(lot_size: int, level: str = "II", tables: Tables | None = None) -> str:
    """Table 1: the sample size code letter of a lot (a lot of 1 reads the first range, 2 to 8)."""
    t = tables or load_tables()
    n, lv = _lot(lot_size), _level(level)
    for _low, high, letters in t.lots:
        if high is None or n <= high:
            return letters[lv]
    raise AssertionError("unreachable: the last lot range is open")  # validated at load


def single_plan(lot_size: int, aql: float | str, level: str = "II", inspection: str = "normal",
                tables: Tables | None = None) -> Plan:
    """The single sampling plan for a lot: Table 1, then Table 2-A (normal) or 2-B (tightened),
    arrows followed; ``aql`` must be one of the tables' columns (else a ``ValueError`` listing them)."""
    t = tables or load_tables()
    n, lv = _lot(lot_size), _level(level)
    if inspection not in t.plans:
        raise ValueError(f"inspection: {inspection!r} is not one of {', '.join(t.plans)} "
                         "(Table 2-C, reduced inspection, is not included)")
    col = _aql_column(aql, t.aql)
    letter = code_letter(n, lv, t)
    rows = t.plans[inspection]
    order = list(rows)
    i, cell = order.index(letter), rows[letter][col]
    while cell in (DOWN, UP):  # validated at load: every arrow reaches a plan
        i += 1 if cell == DOWN else -1
        cell = rows[order[i]][col]
    assert isinstance(cell, tuple)
    used = order[i]
    size = t.sample_size[inspection][used]
    return Plan(lot_size=n, aql=t.aql[col], level=lv, inspection=inspection, code_letter=letter,
                letter=used, sample_size=min(size, n), ac=cell[0], re=cell[1], full_inspection=size >= n)


def sample_order(task_ids: Sequence[str], seed: int | str) -> list[int]:
    """The rank (0 = drawn first) of each of ``task_ids`` in a seeded random order: tasks sort by
    ``sha256(seed, task_id)``, so the order is reproducible, independent of the input order, and a
    task keeps its order relative to every other task when tasks are added or removed."""
    ids = [str(t) for t in task_ids]
    if len(set(ids)) != len(ids):
        dup = sorted({t for t in ids if ids.count(t) > 1})
        raise ValueError(f"sample_order: duplicate task ids: {', '.join(dup[:5])}")
    keys = [hashlib.sha256(f"{seed}\x1f{t}".encode()).hexdigest() for t in ids]
    ranks = [0] * len(ids)
    for rank, i in enumerate(sorted(range(len(ids)), key=lambda k: (keys[k], ids[k]))):
        ranks[i] = rank
    return ranks


def _lot(lot_size: Any) -> int:
    if isinstance(lot_size, bool) or not isinstance(lot_size, int) or lot_size < 1:
        raise ValueError(f"lot_size: must be a whole number >= 1, got {lot_size!r}")
    return lot_size


def _level(level: str) -> str:
    lv = str(level).strip().upper()
    if lv not in LEVELS:
        raise ValueError(f"level: {level!r} is not an inspection level; use one of {', '.join(LEVELS)}")
    return lv


def _aql_column(aql: float | str, columns: tuple[float, ...]) -> int:
    try:
        value = float(aql)
    except (TypeError, ValueError):
        value = float("nan")
    for i, col in enumerate(columns):
        if abs(value - col) <= 1e-9 * col:
            return i
    raise ValueError(f"aql: {aql!r} is not a standard AQL; use one of {', '.join(f'{c:g}' for c in columns)}")


# --- validation -------------------------------------------------------------------------------


class _Errors:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> NoReturn:
        raise ValueError(f"{self.source}: {key}: {message}")


def build_tables(data: Any, source: str = "<iso2859_1>") -> Tables:
    """Validate parsed table data (the YAML file's content) and build the ``Tables``."""
    err = _Errors(source)
    if not isinstance(data, dict) or set(data) != _TOP_KEYS:
        got = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        err.fail("(top)", f"must be a mapping with exactly {', '.join(sorted(_TOP_KEYS))}; got {got}")
    aql = _aqls(err, data["aql"])
    single = data["single"]
    if not isinstance(single, dict) or "normal" not in single or not set(single) <= set(INSPECTIONS):
        err.fail("single", f"must map 'normal' (and optionally 'tightened') to a table; got {single!r:.80}")
    letters = _letter_order(err, single["normal"])
    lots = _lots(err, data["code_letters"], letters)
    used = {row[2][lv] for row in lots for lv in LEVELS}
    sizes: dict[str, dict[str, int]] = {}
    plans: dict[str, dict[str, tuple[Cell, ...]]] = {}
    for name in (k for k in INSPECTIONS if k in single):
        sizes[name], plans[name] = _table(err, f"single.{name}", single[name], aql, used)
    return Tables(lots=lots, aql=aql, sample_size=sizes, plans=plans)


def _aqls(err: _Errors, raw: Any) -> tuple[float, ...]:
    if not isinstance(raw, list) or not raw or not all(_is_number(a) and a > 0 for a in raw):
        err.fail("aql", "must be a non-empty list of positive numbers")
    if any(b <= a for a, b in zip(raw, raw[1:], strict=False)):
        err.fail("aql", "must increase strictly")
    return tuple(float(a) for a in raw)


def _letter_order(err: _Errors, table: Any) -> list[str]:
    sizes = table.get("sample_size") if isinstance(table, dict) else None
    if not isinstance(sizes, dict) or not sizes:
        err.fail("single.normal.sample_size", "must map each code letter to its sample size")
    return [str(k) for k in sizes]


def _lots(err: _Errors, raw: Any, letters: list[str]) -> tuple[tuple[int, int | None, dict[str, str]], ...]:
    if not isinstance(raw, dict) or set(raw) != {"levels", "lots"}:
        err.fail("code_letters", "must be a mapping with exactly 'levels' and 'lots'")
    if raw["levels"] != list(LEVELS):
        err.fail("code_letters.levels", f"must be {list(LEVELS)}, got {raw['levels']!r}")
    rows = raw["lots"]
    if not isinstance(rows, list) or not rows:
        err.fail("code_letters.lots", "must be a non-empty list of lot ranges")
    out: list[tuple[int, int | None, dict[str, str]]] = []
    expect_low = 2
    for i, row in enumerate(rows):
        key = f"code_letters.lots[{i}]"
        if not isinstance(row, list) or len(row) != 2 + len(LEVELS):
            err.fail(key, f"must be [low, high, then {len(LEVELS)} letters], got {row!r}")
        low, high, codes = row[0], row[1], [str(c) for c in row[2:]]
        if not isinstance(low, int) or low != expect_low:
            err.fail(key, f"lot range must start at {expect_low} (ranges are contiguous), got {low!r}")
        last = i == len(rows) - 1
        if (high is None) != last or (high is not None and (not isinstance(high, int) or high < low)):
            err.fail(key, "the upper bound must be a whole number >= the lower bound; only the last "
                          f"range is open (null), got {high!r}")
        for lv, c in zip(LEVELS, codes, strict=True):
            if c not in letters:
                err.fail(f"{key}.{lv}", f"{c!r} is not a code letter of single.normal")
            if out and letters.index(c) < letters.index(out[-1][2][lv]):
                err.fail(f"{key}.{lv}", f"letter {c} is before the previous range's {out[-1][2][lv]}")
        out.append((low, high, dict(zip(LEVELS, codes, strict=True))))
        expect_low = (high or 0) + 1
    return tuple(out)


def _table(err: _Errors, key: str, raw: Any, aql: tuple[float, ...],
           used: set[str]) -> tuple[dict[str, int], dict[str, tuple[Cell, ...]]]:
    if not isinstance(raw, dict) or set(raw) != _TABLE_KEYS:
        err.fail(key, f"must be a mapping with exactly {', '.join(sorted(_TABLE_KEYS))}")
    sizes, rows = raw["sample_size"], raw["plans"]
    if not isinstance(sizes, dict) or not isinstance(rows, dict) or list(sizes) != list(rows):
        err.fail(key, "sample_size and plans must list the same code letters in the same order")
    missing = sorted(used - set(map(str, rows)))
    if missing:
        err.fail(f"{key}.plans", f"no row for code letter(s) {', '.join(missing)} of Table 1")
    prev = 0
    for letter, n in sizes.items():
        if not isinstance(n, int) or isinstance(n, bool) or n <= prev:
            err.fail(f"{key}.sample_size.{letter}", f"must be a whole number above the previous row's {prev}")
        prev = n
    cells = {str(k): tuple(_cell(err, f"{key}.plans.{k}", v, aql, k in used)) for k, v in rows.items()}
    _check_monotone(err, f"{key}.plans", cells, aql)
    return {str(k): v for k, v in sizes.items()}, cells


def _cell(err: _Errors, key: str, row: Any, aql: tuple[float, ...], in_table1: bool) -> Iterable[Cell]:
    if not isinstance(row, list) or len(row) != len(aql):
        err.fail(key, f"must list one cell per AQL column ({len(aql)}), got {row!r:.80}")
    for a, c in zip(aql, row, strict=True):
        where = f"{key}[AQL {a:g}]"
        text = str(c).strip()
        if text in (DOWN, UP):
            yield text
        elif text == BLANK:
            if in_table1:
                err.fail(where, f"'{BLANK}' (no plan) is only allowed in rows Table 1 never names")
            yield None
        else:
            parts = text.split("/")
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                err.fail(where, f"{c!r} is not 'Ac/Re', '{DOWN}', '{UP}' or '{BLANK}'")
            ac, re_ = int(parts[0]), int(parts[1])
            if ac >= re_:
                err.fail(where, f"Ac {ac} must be below Re {re_}")
            yield (ac, re_)


def _check_monotone(err: _Errors, key: str, cells: dict[str, tuple[Cell, ...]], aql: tuple[float, ...]) -> None:
    for letter, row in cells.items():
        acs = [(a, c[0]) for a, c in zip(aql, row, strict=True) if isinstance(c, tuple)]
        for (a0, c0), (a1, c1) in zip(acs, acs[1:], strict=False):
            if c1 < c0:
                err.fail(f"{key}.{letter}[AQL {a1:g}]", f"Ac {c1} is below AQL {a0:g}'s {c0} "
                                                       "(a larger AQL never accepts fewer)")
    order = list(cells)
    for j, a in enumerate(aql):
        last: tuple[str, int] | None = None
        for i, letter in enumerate(order):
            c = cells[letter][j]
            where = f"{key}.{letter}[AQL {a:g}]"
            if c in (DOWN, UP):
                k, seen = i, set()
                while (v := cells[order[k]][j]) in (DOWN, UP):
                    seen.add(k)
                    k += 1 if v == DOWN else -1
                    if not 0 <= k < len(order) or k in seen:
                        err.fail(where, "the arrow leads off the table (or in a loop) without reaching a plan")
                if v is None:
                    err.fail(where, f"the arrow leads to row {order[k]}, which has no plan here")
            elif isinstance(c, tuple):
                if last is not None and c[0] < last[1]:
                    err.fail(where, f"Ac {c[0]} is below row {last[0]}'s {last[1]} (a larger sample "
                                    "never accepts fewer)")
                last = (letter, c[0])


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
