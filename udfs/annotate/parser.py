"""Model answers -> structured attributes: ``parse_answer(text, vocab)``.

A ``<think>...</think>`` block (reasoning models) is left out, then:

1. **JSON** (``method="json"``): the first ``{...}`` (fenced blocks first, prose around it
   ignored) that ``json.loads`` reads, that has a known key and that gives an option or a caption;
   ``"json_repaired"`` when only the tolerant reader could read it (single quotes, trailing commas,
   unquoted keys, a missing closing brace, ...). Keys are matched like terms ("Emotions", "mood",
   "race", "gender").
2. **Free text** (``method="text"``): "key: value" lines ("Emotion: happy", "- **Actions** -
   talking, nodding"); failing those, the whole answer is read as a plain sentence and scanned for
   terms, where ambiguous words count only beside a context word declared in the vocabulary ("a
   white man" is White, "a white shirt" is not; "bright light" is Bright, "a bright smile" is not),
   and the sentence becomes the caption.

An answer term (a list item, a comma- / "and"-separated part of a string) maps to options by, in
order: its exact term key (case, plurals, inflections and synonyms folded), the empty markers
("none", "n/a", "unknown"), the closest term by difflib ratio >= ``cutoff``, then the terms it
contains ("short black hair" -> Short hair, Black hair). A term that maps to nothing goes to
``oov`` as ``"<attribute>: <term>"``; a known term without an option (a synonym mapped to null,
e.g. "beard") as ``"<attribute>: <term> (not an option)"``, a negated one ("no hat", "not
smiling") as ``"<attribute>: <term> (negated)"``; an unknown JSON key as ``"<key>: <value>"``.
Nothing is dropped silently.

Cardinality: a ``one`` attribute takes the first option in answer order; each further distinct
option goes to ``oov`` as ``"<attribute>: <option> (extra, one allowed)"``. A ``many`` attribute
is deduplicated and given in **vocabulary order** (the paper's option order), so equal answers
compare equal however they were worded. The caption is the answer's caption key or line (or, for
a plain sentence, the sentence). An answer is read up to ``MAX_ANSWER_CHARS``.

``values[attr]`` is ``None`` when the answer does not
state the attribute (no key, or null); a ``many`` attribute stated without an option ("none",
"unknown", ``[]``) is ``[]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from facevid.udfs.annotate.jsonish import json_objects
from facevid.udfs.annotate.matching import Hit, TermIndex, index_for
from facevid.udfs.annotate.terms import term_key
from facevid.udfs.annotate.vocabulary import ATTRIBUTES, Vocabulary
from facevid.udfs.errors import StageError

DEFAULT_CUTOFF = 0.88
_EMPTY = frozenset({"", "none", "n/a", "na", "null", "nil", "unknown", "nothing", "not applicable",
                    "not visible", "unclear", "not sure", "unsure", "not specified", "unspecified",
                    "cannot tell", "can't tell", "cannot determine", "indeterminate", "not determinable",
                    "undetermined", "no", "-", "--", "?"})
_EMPTY_PHRASE = re.compile(r"(?:no|none)(?: clear| visible| specific| particular| obvious| notable"
                           r"| discernible)? (?:action|activity|movement|motion|emotion|expression"
                           r"|lighting|appearance|ethnicity|attribute|feature)s?(?: visible| shown)?")
_SPLIT = re.compile(r"\s*(?:[,;/|&+]|\band\b|\bor\b|\bas well as\b|\bplus\b)\s*", re.I)
_STRIP = " \t\r\n\"'`*_[](){}<>.:"
_PAIR = re.compile(r"^[\s>#*\-\u2022\d.)]*[*_\"'`]*(?P<key>[A-Za-z][A-Za-z _/-]{0,40}?)[*_\"'`]*\s*"
                   r"(?::|=|\s[-\u2013\u2014]+\s|[-\u2013\u2014]>)\s*(?P<val>.*?)[\s,]*$")
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)  # reasoning models' scratchpad
_MAX_KEY_WORDS = 3
_MAX_DEPTH = 4
MAX_ANSWER_CHARS = 20_000  # a longer answer is read up to here (generation budgets are far smaller)
_SHORT = 80


@dataclass(frozen=True)
class ParsedAnswer:
    """The structured reading of one answer: ``values`` per attribute (a string or ``None`` for a
    ``one`` attribute, a list or ``None`` for a ``many`` one), the ``caption``, the answer terms
    outside the vocabulary (``oov``) and how it was read (``json`` | ``json_repaired`` | ``text``)."""

    values: dict[str, str | list[str] | None]
    caption: str | None
    oov: list[str]
    method: str


def parse_answer(text: str, vocab: Vocabulary, cutoff: float = DEFAULT_CUTOFF) -> ParsedAnswer:
    """Read a model's answer into vocabulary values (see the module docstring). Raises
    ``StageError("parse", ..., transient=True)`` when nothing is recoverable: an empty answer, or no
    attribute value and no caption (a later prompt version or model may do better)."""
    if not isinstance(text, str):
        raise StageError("parse", f"the answer is a {type(text).__name__}, not text", transient=True)
    if not text.strip():
        raise StageError("parse", "empty answer", transient=True)
    text = text[:MAX_ANSWER_CHARS]
    body = _THINK.sub(" ", text)
    if not body.strip():
        raise StageError("parse", f"the answer is only reasoning: {text.strip()[:_SHORT]!r}", transient=True)
    index = index_for(vocab)
    for obj, repaired in json_objects(body):
        mapping = _known_mapping(obj, index, cutoff)
        if mapping is not None:
            reader = _Reader(vocab, index, cutoff)
            reader.add_mapping(mapping)
            if reader.useful():
                return reader.result("json_repaired" if repaired else "json", body)
    reader = _Reader(vocab, index, cutoff)
    pairs = _pairs(body, vocab, index, cutoff)
    if any(target for target, _, _ in pairs):
        for target, key, value in pairs:
            reader.add(target, key, value)
    else:
        reader.add_hits(index.scan(body, sentence=True))
        if reader.useful():
            reader.caption = _clean_caption(body)
    return reader.result("text", body)


class _Reader:
    """Collects values, oov terms and the caption of one answer."""

    def __init__(self, vocab: Vocabulary, index: TermIndex, cutoff: float) -> None:
        self.vocab, self.index, self.cutoff = vocab, index, cutoff
        self.found: dict[str, list[str]] = {a: [] for a in ATTRIBUTES}
        self.given: set[str] = set()
        self.oov: list[str] = []
        self.caption: str | None = None

    def add_mapping(self, mapping: dict[str, Any]) -> None:
        for key, value in mapping.items():
            self.add(self.index.answer_key(str(key), self.cutoff), str(key), value)

    def add(self, target: str | None, key: str, value: Any) -> None:
        if target is None:
            if value not in (None, "", [], {}):
                self.oov.append(f"{key.strip()}: {_short(value)}")
        elif target == "caption":
            self.caption = self.caption or _clean_caption(value)
        elif value is not None:  # null: not stated
            self.given.add(target)
            for item in _items(value):
                self.add_term(target, item)

    def add_term(self, attr: str, raw: str) -> None:
        """One answer term: its whole wording first, then its comma/and-separated parts."""
        raw = raw.strip(_STRIP)
        key = term_key(raw)
        if not key:
            return
        if (term := self.index.lookup(attr, key)) is not None:
            self._take(attr, term.target, raw)
            return
        if _is_empty(raw):
            return
        parts = [p.strip(_STRIP) for p in _SPLIT.split(raw)]
        parts = [p for p in parts if term_key(p)]
        for part in parts if len(parts) > 1 else [raw]:
            self._add_part(attr, part)

    def _add_part(self, attr: str, raw: str) -> None:
        key = term_key(raw)
        term = self.index.lookup(attr, key)
        if term is None and _is_empty(raw):
            return
        term = term or self.index.fuzzy(attr, key, self.cutoff)
        if term is not None:
            self._take(attr, term.target, raw)
            return
        hits = self.index.scan(raw, (attr,))
        if not hits:
            self.oov.append(f"{attr}: {raw}")
        self.add_hits(hits)

    def add_hits(self, hits: list[Hit]) -> None:
        for hit in hits:
            if hit.negated:
                self.oov.append(f"{hit.term.attr}: {hit.text} (negated)")
            else:
                self._take(hit.term.attr, hit.term.target, hit.text)
                if hit.term.target is not None:
                    self.given.add(hit.term.attr)

    def _take(self, attr: str, target: str | None, raw: str) -> None:
        if target is None:
            self.oov.append(f"{attr}: {raw} (not an option)")
        else:
            self.found[attr].append(target)

    def useful(self) -> bool:
        """Whether the answer gave a caption or at least one option."""
        return self.caption is not None or any(self.found.values())

    def result(self, method: str, text: str) -> ParsedAnswer:
        values: dict[str, str | list[str] | None] = {}
        oov = list(self.oov)
        for name, a in self.vocab.attributes.items():
            got = list(dict.fromkeys(self.found[name]))
            if name not in self.given:
                values[name] = None
            elif a.many:
                values[name] = [o for o in a.options if o in got]
            else:
                values[name] = got[0] if got else None
                oov += [f"{name}: {extra} (extra, one allowed)" for extra in got[1:]]
        if not self.useful():
            why = f"no attribute value or caption in the answer ({method}): {text.strip()[:_SHORT]!r}"
            raise StageError("parse", why, transient=True)
        return ParsedAnswer(values, self.caption, list(dict.fromkeys(oov)), method)


def _known_mapping(obj: Any, index: TermIndex, cutoff: float, depth: int = 0) -> dict | None:
    """``obj`` if one of its keys names an attribute or the caption, else the first nested
    object that does ({"answer": {...}})."""
    if not isinstance(obj, dict):
        return None
    if any(index.answer_key(str(k), cutoff) for k in obj):
        return obj
    if depth < 2:
        for v in obj.values():
            for inner in v if isinstance(v, list) else [v]:
                if (found := _known_mapping(inner, index, cutoff, depth + 1)) is not None:
                    return found
    return None


def _pairs(text: str, vocab: Vocabulary, index: TermIndex, cutoff: float) -> list[tuple[str | None, str, str]]:
    """(attribute | "caption" | None, key, value) for each "key: value" segment of ``text``;
    segments whose key names nothing known are kept (target None) only when short."""
    out = []
    for line in text.splitlines():
        for segment in _key_boundary(vocab).split(line):
            m = _PAIR.match(segment)
            if not m:
                continue
            key, value = m.group("key").strip(), m.group("val").strip()
            target = index.answer_key(key, cutoff)
            if target is not None or len(key.split()) <= _MAX_KEY_WORDS:
                out.append((target, key, value))
    return out


@lru_cache(maxsize=8)
def _key_boundary(vocab: Vocabulary) -> re.Pattern[str]:
    """Splits a line before each known key followed by ":" or "=" ("Ethnicity: Asian, Emotion:
    happy" -> two segments)."""
    keys = {k for a in vocab.attributes.values() for k in (a.name, *a.keys)} | set(vocab.caption_keys)
    alternation = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    return re.compile(rf"(?:[,;|.]|\s{{2,}})\s*(?=[*_\"'`]*(?:{alternation})s?[*_\"'`]*\s*[:=])", re.I)


def _items(value: Any, depth: int = 0) -> list[str]:
    """The strings of an answer value; nesting deeper than ``_MAX_DEPTH`` reads as its text."""
    if value is None:
        return []
    if isinstance(value, (dict, list, tuple)) and depth < _MAX_DEPTH:
        values = value.values() if isinstance(value, dict) else value
        return [i for v in values for i in _items(v, depth + 1)]
    s = _text(value).strip()
    return [s] if s else []


def _is_empty(raw: str) -> bool:
    s = re.sub(r"[^a-z/?' -]", "", raw.lower().replace("\u2019", "'")).strip()
    return s in _EMPTY or bool(_EMPTY_PHRASE.fullmatch(s))


def _clean_caption(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(_items(value)) if not isinstance(value, str) else value
    text = " ".join(text.split()).strip(" \"'`")
    return text or None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (RecursionError, TypeError, ValueError):
        return "<nested value>"


def _short(value: Any) -> str:
    text = " ".join(_text(value).split())
    return text if len(text) <= _SHORT else text[:_SHORT - 3] + "..."
