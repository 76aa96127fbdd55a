"""Text normalisation for vocabulary matching: words, stems, term keys.

A term key is the tuple of stems of a phrase's words, stopwords left out, so "Wearing glasses",
"wears glasses" and "wearing a glass" share one key, as do "Earrings"/"earring", "Braids"/"braided",
"smiling"/"smiles"/"Smile", "nodding"/"nods"/"Nod". The stemmer is a small suffix stripper, not a
linguistic one: the only property that matters is that the vocabulary and the answers go through
the same function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STOPWORDS = frozenset({"a", "an", "the", "his", "her", "their", "its", "my", "your", "our", "to", "of", "is",
                       "are", "was", "were", "be", "been", "being", "this", "that", "some", "any"})
NEGATORS = frozenset({"no", "not", "without", "non", "never", "nor", "neither", "don't", "doesn't", "isn't",
                      "aren't", "wasn't", "weren't"})
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CLAUSE_END = re.compile(r"[.;!?\n]")
_VOWELS = frozenset("aeiou")
_UNDOUBLE = frozenset("bdgmnprt")  # nodding -> nod, running -> run; not rolling, kissing


@dataclass(frozen=True)
class Token:
    """One word of a text: its stem, the raw word, its character span and clause number."""

    stem: str
    raw: str
    start: int
    end: int
    clause: int

    @property
    def negator(self) -> bool:
        return self.raw in NEGATORS


def _undouble(w: str) -> str:
    # a doubled final consonant after a short vowel (nodd, runn, wagg, dimm, grinn, tann)
    if (len(w) >= 3 and w[-1] == w[-2] and w[-1] in _UNDOUBLE and w[-3] in _VOWELS
            and (len(w) < 4 or w[-4] not in _VOWELS)):
        return w[:-1]
    return w


def _short_cvc(w: str) -> bool:
    # gaz(ing), rid(ing), pil(ing), wav(ing): a three-letter stem that lost a final e
    return (len(w) == 3 and w[0] not in _VOWELS and w[1] in _VOWELS
            and w[2] not in _VOWELS and w[2] not in "wxy")


def stem(word: str) -> str:
    """A crude English stem: plural, -ing/-ed and a final -e/-y folded (glasses -> glass,
    hoodies/hoodie/hoody -> hoodi, smiling/smile -> smil, gazing/gaze -> gaze, nodding -> nod,
    earrings -> earr). Words of four letters keep their final e (cape is not cap)."""
    w = word.lower()
    if w.endswith("'s"):
        w = w[:-2]
    w = w.replace("'", "")
    if len(w) <= 3:
        return w
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "i"
    elif w.endswith(("ches", "shes", "xes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    base = None
    if w.endswith("ing") and len(w) >= 6:
        base = w[:-3]
    elif w.endswith("ied") and len(w) > 4:
        return w[:-3] + "i"
    elif w.endswith("ed") and len(w) >= 5:
        base = w[:-2]
    if base is not None:
        undoubled = _undouble(base)
        w = base + "e" if undoubled == base and _short_cvc(base) else undoubled
        return w[:-1] + "i" if w.endswith("y") else w
    if len(w) > 4 and w.endswith("e"):
        return w[:-1]
    if len(w) > 2 and w.endswith("y"):
        return w[:-1] + "i"
    return w


def normalise_text(text: str) -> str:
    """Lower case, typographic quotes and dashes folded."""
    return (text.lower().replace("\u2019", "'").replace("\u2018", "'")
            .replace("\u2013", "-").replace("\u2014", "-"))


def tokenize(text: str) -> list[Token]:
    """The words of ``text`` (stopwords left out), with clause numbers (a clause ends at . ; ! ? or a
    line break) so that matches never span sentences."""
    low = normalise_text(text)
    ends = [m.start() for m in _CLAUSE_END.finditer(low)]
    out: list[Token] = []
    clause = 0
    for m in _WORD.finditer(low):
        while clause < len(ends) and ends[clause] < m.start():
            clause += 1
        raw = m.group()
        if raw in STOPWORDS:
            continue
        out.append(Token(stem(raw), raw, m.start(), m.end(), clause))
    return out


def term_key(text: str) -> tuple[str, ...]:
    """The match key of a phrase: the stems of its words, stopwords left out."""
    return tuple(t.stem for t in tokenize(text))
