"""The template prompt: every option of every attribute filled in from the vocabulary, the answer
format asked for, a version that follows template and vocabulary, user templates as data files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from facevid.udfs.annotate.parser import parse_answer
from facevid.udfs.annotate.prompt import DEFAULT_TEMPLATE, placeholders, render_prompt
from facevid.udfs.annotate.vocabulary import ATTRIBUTES, DEFAULT_PATH, load_vocabulary

VOCAB = load_vocabulary()


def test_every_option_of_every_attribute_is_in_the_prompt() -> None:
    prompt = render_prompt(VOCAB)
    for name in ATTRIBUTES:
        for option in VOCAB.options(name):
            assert f'"{option}"' in prompt.text, (name, option)
        assert json.dumps(list(VOCAB.options(name))) in prompt.text  # the whole list, in order
    assert "${" not in prompt.text


def test_prompt_says_cardinality_frames_and_answer_format() -> None:
    text = render_prompt(VOCAB).text
    assert "Single-choice attributes (ethnicity, emotion)" in text
    assert "Multi-choice attributes (appearance, lighting, action)" in text
    lines = {name: next(line for line in text.splitlines() if line.startswith(f"{i}. {name}:"))
             for i, name in enumerate(ATTRIBUTES, 1)}
    for name in ("ethnicity", "appearance", "lighting"):
        assert "first image only" in lines[name]
    for name in ("action", "emotion"):
        assert "three non-consecutive frames" in lines[name]
    assert "one or more options" in lines["lighting"]
    assert "exactly one option" in lines["emotion"] and "exactly one option" in lines["ethnicity"]
    example = json.loads(text.strip().splitlines()[-1])
    assert list(example) == [*ATTRIBUTES, "caption"]
    assert isinstance(example["appearance"], list) and isinstance(example["emotion"], str)


def test_an_answer_in_the_asked_format_parses_back() -> None:
    answer = {n: [VOCAB.options(n)[0]] if VOCAB[n].many else VOCAB.options(n)[-1] for n in ATTRIBUTES}
    answer["caption"] = "A person talks."
    got = parse_answer(json.dumps(answer), VOCAB)
    assert got.method == "json" and got.oov == [] and got.caption == "A person talks."
    assert got.values == {n: answer[n] for n in ATTRIBUTES}


def test_version_follows_template_and_vocabulary(tmp_path: Path) -> None:
    base = render_prompt(VOCAB)
    assert re.fullmatch(r"v1-[0-9a-f]{12}", base.version)
    assert render_prompt(VOCAB, DEFAULT_TEMPLATE) == base  # deterministic
    changed = tmp_path / "vocabulary.yml"
    changed.write_text(DEFAULT_PATH.read_text().replace("      calm: Neutral\n", "      calm: Neutral\n      placid: Neutral\n"))
    other = render_prompt(load_vocabulary(changed))
    assert other.text == base.text  # synonyms are not in the prompt...
    assert other.version != base.version and other.version.startswith("v1-")  # ...but the version moves
    edited = tmp_path / "prompt_v1.txt"
    edited.write_text(DEFAULT_TEMPLATE.read_text() + "\nBe brief.\n")
    assert render_prompt(VOCAB, edited).version not in (base.version, other.version)


def test_custom_template_file(tmp_path: Path) -> None:
    path = tmp_path / "prompt_short.txt"
    path.write_text("Pick one emotion of ${emotion_options} (${emotion_choice}); costs $$0.\n${attributes}\n"
                    "Reply: ${json_example}")
    prompt = render_prompt(VOCAB, str(path))
    assert prompt.text.startswith('Pick one emotion of ["Neutral", "Happy", "Sad", "Angry", "Fear", "Surprise", '
                                  '"Contempt", "Disgust"] (single choice, exactly one option (a string)); costs $0.')
    assert "- action: multiple choice" in prompt.text and '"Listen To Music"' in prompt.text
    assert re.fullmatch(r"short-[0-9a-f]{12}", prompt.version)
    assert set(placeholders(VOCAB)) >= {f"{a}_{k}" for a in ATTRIBUTES for k in ("options", "choice", "frames")}


@pytest.mark.parametrize(("body", "message"), [
    ("Options: ${emotion_option}", r"unknown placeholder\(s\) \$\{emotion_option\}; known: action_choice"),
    ("Price: $5 per ${emotion_options}", r"unknown placeholder\(s\) a bare \$ \(write \$\$ for a literal \$\)"),
    ("${}", r"unknown placeholder\(s\) \$\{\}"),
])
def test_bad_placeholders_are_clear_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "mine.txt"
    path.write_text(body)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": " + message):
        render_prompt(VOCAB, path)


def test_missing_template_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"prompt template .*nope\.txt: cannot read it"):
        render_prompt(VOCAB, tmp_path / "nope.txt")
