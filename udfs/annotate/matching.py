"""Vocabulary terms found in text: exact and fuzzy lookup of one answer term, and a scan that
finds every term in a phrase or a sentence.

A scan matches options and synonyms by term key (see ``terms``), allowing up to ``MAX_GAP`` words
inside a term ("short black hair" holds "Short hair" and "Black hair"; "wearing a black suit"
holds "Wearing suit"), never across a clause or a negation. A match that lies inside a longer
match is dropped ("white hair" is not the ethnicity White, "no beard" is not "beard"), and where
an option and another attribute's synonym cover the same words the option wins ("smiling" is the
action Smile, not also the emotion Happy). A match right after a negation ("not smiling",
"no hat") is returned with ``negated`` set.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

from facevid.udfs.annotate.terms import Token, term_key, tokenize
from facevid.udfs.annotate.vocabulary import ATTRIBUTES, Vocabulary

MAX_GAP = 2  # words allowed inside one multi-word term
_MIN_FUZZY_CHARS = 4  # shorter terms match exactly or not at all
_ORDER = {a: i for i, a in enumerate(ATTRIBUTES)}


@dataclass(frozen=True)
class Term:
    """One vocabulary term of an attribute: ``target`` is the canonical option, or ``None`` for a
    known term without one; ``option`` marks an option's own wording; ``gated`` terms count in a
    plain sentence only beside a context word."""

    attr: str
    key: tuple[str, ...]
    target: str | None
    option: bool
    gated: bool


@dataclass(frozen=True)
class Hit:
    """A term found by ``TermIndex.scan``: the token positions it covers and its surface text."""

    term: Term
    positions: tuple[int, ...]
    text: str
    negated: bool


class TermIndex:
    """Every option, synonym and ignore phrase of a vocabulary by term key, plus the answer keys
    ("emotion", "mood", "caption", ...) that name an attribute."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.terms: dict[str, dict[tuple[str, ...], Term]] = {}
        self.context: dict[str, frozenset[str]] = {}
        self._first: dict[str, list[Term]] = {}
        self._ignore: dict[str, list[tuple[str, ...]]] = {}
        self.answer_keys: dict[tuple[str, ...], str] = {}
        for name, a in vocab.attributes.items():
            gate_all = "*" in a.needs_context
            gated = {term_key(t) for t in a.needs_context if t != "*"}
            table: dict[tuple[str, ...], Term] = {}
            for opt in a.options:
                key = term_key(opt)
                table[key] = Term(name, key, opt, True, gate_all or key in gated)
            for syn, target in a.synonyms.items():
                key = term_key(syn)
                table.setdefault(key, Term(name, key, target, False, gate_all or key in gated))
            self.terms[name] = table
            self.context[name] = frozenset(term_key(" ".join(a.context)))
            self._ignore[name] = [term_key(p) for p in a.ignore]
            for term in table.values():
                self._first.setdefault(term.key[0], []).append(term)
            for k in (name, *a.keys):
                self.answer_keys.setdefault(term_key(k), name)
        for k in vocab.caption_keys:
            self.answer_keys.setdefault(term_key(k), "caption")
        self._vocab = vocab

    # -- one answer term --------------------------------------------------------------------
    def lookup(self, attr: str, key: tuple[str, ...]) -> Term | None:
        """The term of ``attr`` whose key is exactly ``key``."""
        return self.terms[attr].get(key)

    def fuzzy(self, attr: str, key: tuple[str, ...], cutoff: float) -> Term | None:
        """The term of ``attr`` most similar to ``key`` (difflib ratio of the joined stems), if the
        ratio reaches ``cutoff``; ties go to the earlier term (options before synonyms)."""
        return _closest(" ".join(key), self.terms[attr], cutoff)

    def answer_key(self, raw: str, cutoff: float) -> str | None:
        """The attribute (or ``"caption"``) an answer key names: "Emotions", "mood", "Ethnicty"."""
        key = term_key(raw.replace("_", " "))
        if not key:
            return None
        return self.answer_keys.get(key) or _closest(" ".join(key), self.answer_keys, cutoff)

    # -- a phrase or a sentence --------------------------------------------------------------
    def scan(self, text: str, attrs: tuple[str, ...] = ATTRIBUTES, sentence: bool = False) -> list[Hit]:
        """Every term of ``attrs`` in ``text``, in text order. ``sentence``: ``text`` is free prose,
        so gated terms count only beside one of their attribute's context words."""
        tokens = tokenize(text)
        found: list[tuple[Term, tuple[int, ...]]] = []
        masks: dict[tuple[str, int], list[set[int]]] = {}  # (attribute, first position) -> masked spans
        for i, tok in enumerate(tokens):
            for term in self._first.get(tok.stem, ()):
                if term.attr in attrs and (pos := _match(tokens, i, term.key)):
                    found.append((term, pos))
            for a in attrs:
                for ig in self._ignore[a]:
                    if ig[0] == tok.stem and (pos := _match(tokens, i, ig)):
                        for j in pos:
                            masks.setdefault((a, j), []).append(set(pos))
        found = [(t, p) for t, p in found if not any(set(p) <= m for m in masks.get((t.attr, p[0]), ()))]
        if sentence:
            found = [(t, p) for t, p in found if not t.gated or self._has_context(tokens, t.attr, p)]
        found.sort(key=lambda f: (-len(f[1]), not f[0].option, f[1][0], _ORDER.get(f[0].attr, 99)))
        chosen: list[tuple[Term, tuple[int, ...]]] = []
        by_position: dict[int, list[tuple[Term, tuple[int, ...]]]] = {}
        for term, pos in found:
            if not any(_covered(term, pos, t, p) for t, p in by_position.get(pos[0], ())):
                chosen.append((term, pos))
                for j in pos:
                    by_position.setdefault(j, []).append((term, pos))
        chosen.sort(key=lambda f: (f[1][0], _ORDER.get(f[0].attr, 99)))
        low = text if len(text) == len(text.lower()) else text.lower()
        hits = []
        for term, pos in chosen:
            first = pos[0]
            negated = first > 0 and tokens[first - 1].negator and tokens[first - 1].clause == tokens[first].clause
            start = tokens[first - 1].start if negated else tokens[first].start
            hits.append(Hit(term, pos, low[start:tokens[pos[-1]].end], negated))
        return hits

    def _has_context(self, tokens: list[Token], attr: str, pos: tuple[int, ...]) -> bool:
        a = self._vocab[attr]
        lo = pos[0] - a.window if a.side == "both" else pos[-1] + 1
        window = range(max(lo, 0), min(pos[-1] + a.window + 1, len(tokens)))
        clause = tokens[pos[0]].clause
        return any(j not in pos and tokens[j].clause == clause and tokens[j].stem in self.context[attr]
                   for j in window)


@lru_cache(maxsize=8)
def index_for(vocab: Vocabulary) -> TermIndex:
    """The (cached) term index of a vocabulary."""
    return TermIndex(vocab)


def _closest(probe: str, table: dict, cutoff: float):
    if len(probe) < _MIN_FUZZY_CHARS:
        return None
    best, best_ratio = None, cutoff
    for key, value in table.items():
        ratio = SequenceMatcher(None, probe, " ".join(key)).ratio()
        if ratio > best_ratio or (ratio == best_ratio and best is None):
            best, best_ratio = value, ratio
    return best


def _match(tokens: list[Token], i: int, key: tuple[str, ...]) -> tuple[int, ...] | None:
    """Positions of ``key``'s words from token ``i`` on (first word at ``i``), with at most
    ``MAX_GAP`` other words inside, none of them a negation, all in one clause."""
    clause, pos, gap = tokens[i].clause, [i], 0
    for s in key[1:]:
        k = pos[-1] + 1
        while k < len(tokens) and tokens[k].stem != s and tokens[k].clause == clause:
            if tokens[k].negator or gap == MAX_GAP:
                return None
            k, gap = k + 1, gap + 1
        if k >= len(tokens) or tokens[k].clause != clause:
            return None
        pos.append(k)
    return tuple(pos)


def _covered(term: Term, pos: tuple[int, ...], other: Term, other_pos: tuple[int, ...]) -> bool:
    """Whether an already chosen match (``other``) makes this one redundant."""
    if not set(pos) <= set(other_pos):
        return False
    if set(pos) != set(other_pos):
        return True  # strictly inside a longer match
    return other.attr == term.attr or other.option  # same words: an option beats other synonyms
