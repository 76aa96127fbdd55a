"""JSON objects inside model answers: strict where possible, repaired where cheap.

``json_objects(text)`` yields ``(object, repaired)`` for each ``{...}`` in an answer, fenced
(```json ... ```) blocks first. An object that ``json.loads`` rejects is read by a tolerant
reader that accepts single quotes, unquoted keys and values, trailing or missing commas, Python
literals (True/None) and a missing closing brace or bracket at the end of the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)(?:```|$)", re.S)
_BARE = {"true": True, "false": False, "null": None, "none": None, "nil": None}
_MAX_OBJECTS = 8
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def json_objects(text: str) -> Iterator[tuple[dict[str, Any], bool]]:
    """Top-level ``{...}`` objects of ``text`` (fenced blocks first), each with whether it needed
    repair. An unbalanced last object runs to the end of the text."""
    blocks = [m.group(1) for m in _FENCE.finditer(text)]
    seen = 0
    for block in [*blocks, text]:
        for span in _spans(block):
            obj, repaired = _load(span)
            if isinstance(obj, dict):
                yield obj, repaired
            seen += 1
            if seen >= _MAX_OBJECTS:
                return


def _spans(text: str) -> Iterator[str]:
    """Balanced ``{...}`` substrings (string-aware), outermost only, in order."""
    i = text.find("{")
    while i != -1:
        end = _balanced_end(text, i)
        yield text[i:end]
        i = text.find("{", end)


def _balanced_end(text: str, start: int) -> int:
    depth, quote, i = 0, None, start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif (ch == quote and not _apostrophe(text, i)) or (quote == "'" and ch == "\n"):
                quote = None
        elif ch == '"' or (ch == "'" and not _apostrophe(text, i)):
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def _apostrophe(text: str, i: int) -> bool:
    """A ' between two letters (man's, don't) is an apostrophe, not a quote."""
    return text[i] == "'" and text[i - 1:i].isalpha() and text[i + 1:i + 2].isalpha()


def _load(span: str) -> tuple[Any, bool]:
    try:
        return json.loads(span), False
    except (ValueError, RecursionError):
        pass
    try:
        return _Loose(span.translate(_QUOTES)).value(), True
    except (ValueError, IndexError, RecursionError):
        return None, True


class _Loose:
    """A forgiving reader for JSON-like text (see the module docstring)."""

    def __init__(self, s: str) -> None:
        self.s, self.i = s, 0

    def _ws(self) -> None:
        while self.i < len(self.s) and (self.s[self.i].isspace() or self.s[self.i] == ","):
            self.i += 1

    def _peek(self) -> str:
        self._ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def value(self) -> Any:
        ch = self._peek()
        if ch == "{":
            return self._object()
        if ch == "[":
            return self._array()
        if ch in "\"'":
            return self._string(ch)
        if not ch:
            raise ValueError("end of text")
        return self._bare(",}]\n")

    def _object(self) -> dict[str, Any]:
        self.i += 1
        out: dict[str, Any] = {}
        while (ch := self._peek()) and ch != "}":
            at = self.i
            key = self._string(ch) if ch in "\"'" else self._bare(":,}\n")
            if self._peek() != ":":
                self.i = max(self.i, at + 1)  # a key without a value: skip it
                continue
            self.i += 1
            out[str(key).strip()] = self.value() if self._peek() not in ("}", "") else None
        self.i += 1
        return out

    def _array(self) -> list[Any]:
        self.i += 1
        out = []
        while (ch := self._peek()) and ch != "]":
            if ch == "}":
                break  # a missing ] before the object closes
            out.append(self.value())
        if self._peek() == "]":
            self.i += 1
        return out

    def _string(self, quote: str) -> str:
        self.i += 1
        buf = []
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch == "\\" and self.i + 1 < len(self.s):
                nxt = self.s[self.i + 1]
                buf.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
                self.i += 2
                continue
            self.i += 1
            if ch == quote and not (quote == "'" and _apostrophe(self.s, self.i - 1)):
                break
            buf.append(ch)
        return "".join(buf)

    def _bare(self, stops: str) -> Any:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in stops:
            self.i += 1
        word = self.s[start:self.i].strip()
        if word.lower() in _BARE:
            return _BARE[word.lower()]
        try:
            return json.loads(word)
        except ValueError:
            return word
