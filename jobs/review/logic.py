"""The review page's rules, as pure functions: which control a field gets, what a submitted value
may be, the verdict rows a submitted task becomes, the queue order and when a task is done.

A field is reviewed against the model's value (``model_values`` of the task, JSON): the reviewer
keeps it (``accept``) or replaces it (``correct``); the restoration field is ``accept``/``reject``
of the restored file. Values are canonical before they are compared or stored: a ``one`` field is
an option or null (none fits), a ``many`` field a list of distinct options in vocabulary order
(null counts as the empty list).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from facevid.udfs.curation.review_schema import AGE_GROUPS, RESTORATION_FIELD, RESTORATION_OPTIONS

AGE_FIELD = "age"
_REVIEWER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_LAST_RANK = 2**31


def check_reviewer(name: str | None) -> str:
    """The reviewer name, or a ``ValueError``: 1-64 characters, letters, digits and ``. _ @ -``,
    starting with a letter or digit (it goes into cookies, leases and the verdict rows)."""
    if not name or not _REVIEWER.fullmatch(name):
        raise ValueError(f"reviewer name {name!r}: give 1-64 letters, digits or . _ @ - (starting with a "
                         "letter or digit), e.g. --reviewer alice")
    return name


@dataclass(frozen=True)
class FieldSpec:
    """How one task field is reviewed: its options, ``many`` (checkboxes) or one (radio), and whether
    it is the restoration verdict (accept/reject, not compared with a model value)."""

    name: str
    options: tuple[str, ...]
    many: bool = False
    restoration: bool = False

    def canonical(self, value: Any) -> Any:
        """``value`` in canonical form, or a ``ValueError`` naming the field and the bad value."""
        if self.restoration:
            if value not in self.options:
                raise ValueError(f"{self.name}: expected one of {', '.join(self.options)}, got {value!r}")
            return value
        if not self.many:
            if value is not None and (not isinstance(value, str) or value not in self.options):
                raise ValueError(f"{self.name}: {value!r} is not an option (or null)")
            return value
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{self.name}: expected a list of options, got {value!r}")
        bad = [v for v in value if v not in self.options]
        if bad or len(set(value)) != len(value):
            raise ValueError(f"{self.name}: " + (f"not options: {', '.join(map(repr, bad))}" if bad
                                                 else f"repeated options in {value!r}"))
        return sorted(value, key=self.options.index)

    def same(self, reviewed: Any, model: Any) -> bool:
        """Whether a canonical reviewer value equals the model's value (a ``many`` model value in any
        order; a model value outside the vocabulary never does)."""
        try:
            return reviewed == self.canonical(model)
        except ValueError:
            return False


def field_spec(name: str, vocab: Any) -> FieldSpec:
    """The ``FieldSpec`` of a task field: ``restoration``, ``age`` (``AGE_GROUPS``) or a vocabulary
    attribute (its options and cardinality); ``ValueError`` for anything else."""
    if name == RESTORATION_FIELD:
        return FieldSpec(name, RESTORATION_OPTIONS, restoration=True)
    if name == AGE_FIELD:
        return FieldSpec(name, AGE_GROUPS)
    if name not in vocab.attributes:
        raise ValueError(f"field {name!r} is neither an attribute of the vocabulary, {AGE_FIELD} nor "
                         f"{RESTORATION_FIELD}")
    attr = vocab[name]
    return FieldSpec(name, attr.options, many=attr.many)


def model_values(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task's ``model_values`` JSON as a dict (empty when null)."""
    raw = task.get("model_values")
    values = json.loads(raw) if raw else {}
    if not isinstance(values, dict):
        raise ValueError(f"task {task.get('task_id')}: model_values is not a JSON object")
    return values


def verdict_rows(task: Mapping[str, Any], values: Mapping[str, Any], vocab: Any, *, reviewer: str,
                 session_id: str, tasks_version: int, now: datetime | None = None) -> list[dict[str, Any]]:
    """One ``review.verdicts`` row per field of ``task`` from the submitted ``values`` (every field,
    nothing else); ``ValueError`` on a missing, unknown or invalid value (nothing is written then)."""
    fields = list(task["fields"] or [])
    missing = [f for f in fields if f not in values]
    unknown = sorted(set(values) - set(fields))
    if missing or unknown:
        raise ValueError("submit every field of the task and nothing else"
                         + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; not in the task: {', '.join(unknown)}" if unknown else ""))
    model = model_values(task)
    stamp = now or datetime.now(UTC)
    rows = []
    for name in fields:
        spec = field_spec(name, vocab)
        value = spec.canonical(values[name])
        verdict = value if spec.restoration else ("accept" if spec.same(value, model.get(name)) else "correct")
        rows.append({"verdict_id": uuid.uuid4().hex, "task_id": task["task_id"], "kind": task["kind"],
                     "batch_id": task.get("batch_id"), "clip_id": task["clip_id"], "field": name,
                     "model_value": json.dumps(model.get(name)), "reviewer_value": json.dumps(value),
                     "verdict": verdict, "reviewer": reviewer, "reviewed_at": stamp,
                     "tasks_version": int(tasks_version), "session_id": session_id})
    return rows


def queue_key(task: Mapping[str, Any]) -> tuple[float, bool, int, str]:
    """Queue order: priority descending, then tasks in the acceptance sample first, then sample
    rank ascending, then task id (nulls last)."""
    rank = task.get("sample_rank")
    return (-float(task.get("priority") or 0.0), not task.get("in_sample"),
            _LAST_RANK if rank is None else int(rank), str(task["task_id"]))


def select(tasks: Iterable[Mapping[str, Any]], kind: str | None = None,
           batch: str | None = None) -> list[Mapping[str, Any]]:
    """The tasks of the page's filter (``--kind``, ``--batch``) in queue order."""
    chosen = [t for t in tasks if (kind is None or t["kind"] == kind) and (batch is None or t.get("batch_id") == batch)]
    return sorted(chosen, key=queue_key)


def done_ids(tasks: Iterable[Mapping[str, Any]], reviewed: Mapping[str, set[str]]) -> set[str]:
    """Ids of the tasks whose every field has a verdict (``reviewed``: task id -> fields with one,
    by any reviewer)."""
    return {t["task_id"] for t in tasks if set(t["fields"] or []) <= reviewed.get(t["task_id"], set())}
