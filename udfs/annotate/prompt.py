"""The template prompt: the paper's option lists filled into a user-editable data file.

A template (``data/prompt_v1.txt`` by default, or any text file a project keeps) uses
``${name}`` placeholders, ``$$`` for a literal ``$``. Known names: ``<attribute>_options`` (the
allowed options as a JSON list), ``<attribute>_choice`` (single or multiple choice, from the
cardinality), ``<attribute>_frames`` (first frame or three later frames, from ``judged_on``),
``single_choice`` / ``multi_choice`` (the attribute names of each kind), ``attributes`` (all of the
above as one block) and ``json_example`` (the answer object to return). Any other name is an
error. ``Prompt.version`` is ``<template name>-<hash of the template text and the vocabulary
version>``: editing either gives captions a new prompt version (and a retry of parse errors).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from facevid.udfs.annotate.vocabulary import Attribute, Vocabulary

DEFAULT_TEMPLATE = Path(__file__).with_name("data") / "prompt_v1.txt"
_PLACEHOLDER = re.compile(r"\$(?:\$|\{([^{}$]*)\}|)")
_FRAMES = {
    "first_frame": "judge it on the first image only (the clip's first frame)",
    "three_frames": "judge it across the later images (three non-consecutive frames)",
}


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt and its version (``v1-<12 hex>`` for the packaged template)."""

    text: str
    version: str


def render_prompt(vocab: Vocabulary, template: str | os.PathLike[str] | None = None) -> Prompt:
    """The prompt of a template file (default: the packaged ``prompt_v1.txt``) with the
    vocabulary filled in. The version's name part is the file's stem without ``prompt_``."""
    path = Path(template) if template is not None else DEFAULT_TEMPLATE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"prompt template {path}: cannot read it ({exc.strerror or exc})") from None
    name = path.stem.removeprefix("prompt_") or path.stem
    return render_template(vocab, text, name, str(path))


def render_template(vocab: Vocabulary, text: str, name: str = "custom", source: str = "<template>") -> Prompt:
    """Fill a template text (see the module docstring); ``source`` names it in errors."""
    values = placeholders(vocab)
    bad = sorted({"${" + m.group(1) + "}" if m.group(1) is not None else "a bare $ (write $$ for a literal $)"
                  for m in _PLACEHOLDER.finditer(text) if m.group() != "$$" and m.group(1) not in values})
    if bad:
        raise ValueError(f"{source}: unknown placeholder(s) {', '.join(bad)}; known: {', '.join(sorted(values))}")
    rendered = _PLACEHOLDER.sub(lambda m: "$" if m.group() == "$$" else values[m.group(1)], text)
    digest = hashlib.sha256(f"{text}\0{vocab.version}".encode()).hexdigest()[:12]
    return Prompt(rendered, f"{name}-{digest}")


def placeholders(vocab: Vocabulary) -> dict[str, str]:
    """Every placeholder name a template may use, with its value for ``vocab``."""
    out: dict[str, str] = {}
    lines = []
    for name, a in vocab.attributes.items():
        out[f"{name}_options"] = json.dumps(list(a.options), ensure_ascii=False)
        out[f"{name}_choice"] = _choice(a)
        out[f"{name}_frames"] = _FRAMES[a.judged_on]
        lines.append(f"- {name}: {_choice(a)}; {_FRAMES[a.judged_on]}.\n"
                     f"  Allowed options: {out[f'{name}_options']}")
    out["single_choice"] = ", ".join(n for n, a in vocab.attributes.items() if not a.many)
    out["multi_choice"] = ", ".join(n for n, a in vocab.attributes.items() if a.many)
    out["attributes"] = "\n".join(lines)
    example = {n: ["<option>", "..."] if a.many else "<option>" for n, a in vocab.attributes.items()}
    example["caption"] = "<one sentence>"
    out["json_example"] = json.dumps(example, ensure_ascii=False)
    return out


def _choice(a: Attribute) -> str:
    if not a.many:
        return "single choice, exactly one option (a string)"
    if a.min_count:
        return "multiple choice, one or more options (a list)"
    return "multiple choice, every option that applies (a list, possibly empty)"
