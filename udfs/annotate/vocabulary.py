"""The attribute vocabulary (the paper's Table 1) as validated project data.

``data/vocabulary.yml`` holds, per attribute, its options (the canonical labels), cardinality,
what it is judged on and a synonym map; ``load_vocabulary`` checks every key when it loads and
fails with a ``ValueError`` naming the file and the key. ``Vocabulary.version`` is a short hash of
the parsed content (comments do not count), so editing the vocabulary changes the fingerprint of
every stage that uses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

import yaml

from facevid.udfs.annotate.terms import term_key
from facevid.udfs.base import file_version

ATTRIBUTES = ("ethnicity", "appearance", "lighting", "action", "emotion")
DEFAULT_PATH = Path(__file__).with_name("data") / "vocabulary.yml"
CARDINALITIES = ("one", "many")
JUDGED_ON = ("first_frame", "three_frames")
SIDES = ("after", "both")
_TOP_KEYS = {"attributes", "caption_keys"}
_ATTR_KEYS = {"cardinality", "min", "static", "judged_on", "count", "keys", "options", "synonyms",
              "ignore", "sentences"}
_REQUIRED = {"cardinality", "static", "judged_on", "count", "options"}
_SENTENCE_KEYS = {"needs_context", "side", "window", "context"}


@dataclass(frozen=True)
class Attribute:
    """One attribute: its canonical options (in the paper's order), cardinality (``many``: a list,
    else one string), whether it is static, what it is judged on (``first_frame`` or
    ``three_frames``) and its synonyms (answer term -> option, or ``None`` for a known term that
    has no option). The rest steers the parser: other answer ``keys`` naming the attribute,
    ``ignore`` phrases, and how plain sentences are scanned (``needs_context`` terms count only
    with a ``context`` word within ``window`` words on ``side``)."""

    name: str
    options: tuple[str, ...]
    many: bool
    static: bool
    judged_on: str
    synonyms: dict[str, str | None]
    min_count: int = 0
    keys: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    needs_context: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    window: int = 3
    side: str = "both"

    def __hash__(self) -> int:
        return hash((self.name, self.options, tuple(sorted(self.synonyms.items(), key=str))))


@dataclass(frozen=True)
class Vocabulary:
    """The attributes by name (in ``ATTRIBUTES`` order) and a content ``version``."""

    attributes: dict[str, Attribute]
    version: str
    caption_keys: tuple[str, ...] = ("caption",)
    path: str = field(default="", compare=False)

    def __hash__(self) -> int:
        return hash((self.version, tuple(self.attributes)))

    def __getitem__(self, attr: str) -> Attribute:
        try:
            return self.attributes[attr]
        except KeyError:
            raise KeyError(f"unknown attribute {attr!r} (known: {', '.join(self.attributes)})") from None

    def options(self, attr: str) -> tuple[str, ...]:
        """The canonical labels of ``attr``, in vocabulary order."""
        return self[attr].options

    def is_valid(self, attr: str, value: object) -> bool:
        """Whether ``value`` is a canonical option of ``attr`` (a list: a ``many`` attribute's
        distinct options)."""
        a = self[attr]
        if isinstance(value, str):
            return value in a.options
        if isinstance(value, (list, tuple)) and a.many:
            return len(set(value)) == len(value) and all(isinstance(v, str) and v in a.options for v in value)
        return False

    def sql_lists(self) -> dict[str, list[str]]:
        """attribute -> its options, for value-set expectations (``ethnicity IN (...)``, array
        elements of ``appearance`` in ...)."""
        return {name: list(a.options) for name, a in self.attributes.items()}

    def cardinality(self) -> dict[str, str]:
        """attribute -> ``one`` | ``many`` (the column is a string or an array of strings)."""
        return {name: "many" if a.many else "one" for name, a in self.attributes.items()}


def load_vocabulary(path: str | os.PathLike[str] | None = None) -> Vocabulary:
    """The vocabulary in ``path`` (default: the packaged ``data/vocabulary.yml``), validated;
    cached per file and modification time."""
    return _load(*file_version(path, DEFAULT_PATH, "the vocabulary"))


@lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int, _size: int) -> Vocabulary:
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    return build_vocabulary(data, path)


def build_vocabulary(data: Any, source: str = "<vocabulary>") -> Vocabulary:
    """Validate parsed vocabulary data (the YAML file's content) and build the ``Vocabulary``."""
    err = _Errors(source)
    if not isinstance(data, dict):
        err.fail("", "the file must be a mapping with 'attributes'")
    err.unknown("", data, _TOP_KEYS)
    attrs = data.get("attributes")
    if not isinstance(attrs, dict):
        err.fail("attributes", "must be a mapping of attribute name -> definition")
    missing = [a for a in ATTRIBUTES if a not in attrs]
    extra = [a for a in attrs if a not in ATTRIBUTES]
    if missing or extra:
        err.fail("attributes", f"must be exactly {', '.join(ATTRIBUTES)}"
                 + (f"; missing {', '.join(missing)}" if missing else "")
                 + (f"; unknown {', '.join(map(str, extra))}" if extra else ""))
    built = {name: _attribute(name, attrs[name], err) for name in ATTRIBUTES}
    caption_keys = _strings(data.get("caption_keys", ["caption"]), "caption_keys", err)
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    version = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    return Vocabulary(built, version, tuple(dict.fromkeys(["caption", *caption_keys])), source)


def _attribute(name: str, spec: Any, err: _Errors) -> Attribute:
    at = f"attributes.{name}"
    if not isinstance(spec, dict):
        err.fail(at, "must be a mapping")
    err.unknown(at, spec, _ATTR_KEYS)
    for key in sorted(_REQUIRED - spec.keys()):
        err.fail(f"{at}.{key}", "is required")
    if spec["cardinality"] not in CARDINALITIES:
        err.fail(f"{at}.cardinality", f"must be one of {', '.join(CARDINALITIES)}, not {spec['cardinality']!r}")
    if not isinstance(spec["static"], bool):
        err.fail(f"{at}.static", "must be true or false")
    if spec["judged_on"] not in JUDGED_ON:
        err.fail(f"{at}.judged_on", f"must be one of {', '.join(JUDGED_ON)}, not {spec['judged_on']!r}")
    options = _strings(spec["options"], f"{at}.options", err)
    if not options:
        err.fail(f"{at}.options", "must list at least one option")
    seen: dict[object, str] = {}
    for opt in options:
        for probe, what in ((opt.strip().lower(), "a duplicate (case-insensitive) of"),
                            (term_key(opt), "the same term as")):
            if not probe:
                err.fail(f"{at}.options", f"option {opt!r} has no words")
            if probe in seen:
                err.fail(f"{at}.options", f"option {opt!r} is {what} {seen[probe]!r}")
            seen[probe] = opt
    count = spec["count"]
    if not isinstance(count, int) or isinstance(count, bool) or count != len(options):
        err.fail(f"{at}.count", f"says {count!r} but {len(options)} options are listed")
    many = spec["cardinality"] == "many"
    min_count = spec.get("min", 0)
    if not isinstance(min_count, int) or isinstance(min_count, bool) or not 0 <= min_count <= (
            len(options) if many else 1):
        err.fail(f"{at}.min", f"must be an integer between 0 and {len(options) if many else 1}")
    synonyms = _synonyms(at, spec.get("synonyms") or {}, options, err)
    known_terms = {term_key(t) for t in [*options, *synonyms]}
    ignore = _strings(spec.get("ignore", []), f"{at}.ignore", err)
    for phrase in ignore:
        if term_key(phrase) in known_terms or not term_key(phrase):
            err.fail(f"{at}.ignore", f"{phrase!r} reads as a term of {name} itself (stopwords do not count)")
    sent = spec.get("sentences") or {}
    if not isinstance(sent, dict):
        err.fail(f"{at}.sentences", "must be a mapping")
    err.unknown(f"{at}.sentences", sent, _SENTENCE_KEYS)
    needs = _strings(sent.get("needs_context", []), f"{at}.sentences.needs_context", err)
    for term in needs:
        if term != "*" and term_key(term) not in known_terms:
            err.fail(f"{at}.sentences.needs_context", f"{term!r} is neither an option nor a synonym of {name}")
    side = sent.get("side", "both")
    if side not in SIDES:
        err.fail(f"{at}.sentences.side", f"must be one of {', '.join(SIDES)}, not {side!r}")
    window = sent.get("window", 3)
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        err.fail(f"{at}.sentences.window", "must be a positive integer")
    return Attribute(
        name=name, options=tuple(options), many=many, static=spec["static"], judged_on=spec["judged_on"],
        synonyms=synonyms, min_count=min_count, keys=tuple(_strings(spec.get("keys", []), f"{at}.keys", err)),
        ignore=tuple(ignore), needs_context=tuple(needs),
        context=tuple(_strings(sent.get("context", []), f"{at}.sentences.context", err)),
        window=window, side=side)


def _synonyms(at: str, raw: Any, options: list[str], err: _Errors) -> dict[str, str | None]:
    if not isinstance(raw, dict):
        err.fail(f"{at}.synonyms", "must be a mapping of term -> option (or null)")
    by_key = {term_key(o): o for o in options}
    out: dict[str, str | None] = {}
    targets: dict[tuple[str, ...], tuple[str, str | None]] = {}
    for term, target in raw.items():
        where = f"{at}.synonyms.{term}"
        if not isinstance(term, str) or not term_key(term):
            err.fail(where, "the term must be a string with at least one word")
        if target is not None and target not in options:
            err.fail(where, f"target {target!r} is not an option of {at.split('.')[-1]}")
        key = term_key(term)
        if key in by_key and by_key[key] != target:
            err.fail(where, f"the term reads as the option {by_key[key]!r} but maps to {target!r}")
        if key in targets and targets[key][1] != target:
            err.fail(where, f"reads as the same term as {targets[key][0]!r}, which maps to {targets[key][1]!r}")
        targets[key] = (term, target)
        out[term] = target
    return out


def _strings(value: Any, where: str, err: _Errors) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        err.fail(where, "must be a list of non-empty strings")
    return [v.strip() for v in value]


class _Errors:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> NoReturn:
        raise ValueError(f"{self.source}: {key or '<top level>'}: {message}")

    def unknown(self, at: str, mapping: dict, allowed: set[str]) -> None:
        bad = sorted(str(k) for k in mapping if k not in allowed)
        if bad:
            self.fail(at, f"unknown key(s) {', '.join(bad)} (allowed: {', '.join(sorted(allowed))})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
