"""The packaged vocabulary is the paper's Table 1 (counts, spellings, cardinality, frames), and a
broken copy fails at load with a ValueError naming the file and the key."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from facevid.udfs.annotate.vocabulary import ATTRIBUTES, DEFAULT_PATH, load_vocabulary

PAPER_COUNTS = {"ethnicity": 13, "appearance": 72, "lighting": 8, "action": 44, "emotion": 8}
SHARED_TABLE = Path(os.environ.get("FACEVID_SHARED", REPO.parent / "shared")) / "vocabulary" / "dh_facevid_attributes.yml"


def test_packaged_vocabulary_has_the_papers_counts_and_kinds() -> None:
    v = load_vocabulary()
    assert tuple(v.attributes) == ATTRIBUTES
    assert {a: len(v.options(a)) for a in ATTRIBUTES} == PAPER_COUNTS
    assert v.cardinality() == {"ethnicity": "one", "appearance": "many", "lighting": "many",
                               "action": "many", "emotion": "one"}
    assert {a: v[a].judged_on for a in ATTRIBUTES} == {
        "ethnicity": "first_frame", "appearance": "first_frame", "lighting": "first_frame",
        "action": "three_frames", "emotion": "three_frames"}
    assert [a for a in ATTRIBUTES if v[a].static] == ["ethnicity", "appearance", "lighting"]
    assert v["lighting"].min_count == 1  # "one or more"
    assert {"Lipsticks", "Bush eyebrow", "Side burn", "No beard"} <= set(v.options("appearance"))
    assert "Pile" in v.options("action")
    assert len(v.version) == 12 and int(v.version, 16) >= 0


def test_options_are_the_shared_transcription_verbatim() -> None:
    if not SHARED_TABLE.exists():
        pytest.skip(f"shared vocabulary not found at {SHARED_TABLE}")
    paper = yaml.safe_load(SHARED_TABLE.read_text())["attributes"]
    v = load_vocabulary()
    for name in ATTRIBUTES:
        assert list(v.options(name)) == paper[name]["options"], name


def test_helpers_for_the_gate() -> None:
    v = load_vocabulary()
    lists = v.sql_lists()
    assert set(lists) == set(ATTRIBUTES) and lists["emotion"][:2] == ["Neutral", "Happy"]
    assert v.is_valid("emotion", "Happy") and not v.is_valid("emotion", "happy")
    assert v.is_valid("action", ["Talk", "Nod"]) and not v.is_valid("action", ["Talk", "Talk"])
    assert not v.is_valid("emotion", ["Happy"])  # a one attribute is a string
    assert not v.is_valid("action", ["Talk", "Juggle"])
    assert v["appearance"].synonyms["beard"] is None and v["appearance"].synonyms["glasses"] == "Eyeglasses"
    with pytest.raises(KeyError, match="unknown attribute 'age'"):
        v.options("age")


def test_load_is_cached_and_the_version_follows_content_not_comments(tmp_path: Path) -> None:
    assert load_vocabulary() is load_vocabulary(DEFAULT_PATH)
    text = DEFAULT_PATH.read_text()
    commented = tmp_path / "commented.yml"
    commented.write_text("# a local note\n" + text)
    assert load_vocabulary(commented).version == load_vocabulary().version
    changed = tmp_path / "changed.yml"
    changed.write_text(text.replace("      glasses: Eyeglasses\n", "      glasses: Eyeglasses\n      goggles: Eyeglasses\n"))
    v = load_vocabulary(changed)
    assert v["appearance"].synonyms["goggles"] == "Eyeglasses"
    assert v.version != load_vocabulary().version


def _data() -> dict:
    return copy.deepcopy(yaml.safe_load(DEFAULT_PATH.read_text()))


def _mutate(fn):
    def apply() -> dict:
        data = _data()
        fn(data)
        return data
    return apply


BROKEN = [
    pytest.param(_mutate(lambda d: d.update(extra_key=1)), "<top level>: unknown key(s) extra_key", id="unknown_top_key"),
    pytest.param(_mutate(lambda d: d["attributes"]["emotion"].update(cardinalty="one")),
                 "attributes.emotion: unknown key(s) cardinalty", id="unknown_attribute_key"),
    pytest.param(_mutate(lambda d: d["attributes"].pop("lighting")), "attributes: must be exactly", id="missing_attribute"),
    pytest.param(_mutate(lambda d: d["attributes"].update(age=d["attributes"]["emotion"])),
                 "unknown age", id="extra_attribute"),
    pytest.param(_mutate(lambda d: d["attributes"]["action"].update(cardinality="several")),
                 "attributes.action.cardinality: must be one of one, many", id="bad_cardinality"),
    pytest.param(_mutate(lambda d: d["attributes"]["action"].update(judged_on="last_frame")),
                 "attributes.action.judged_on", id="bad_judged_on"),
    pytest.param(_mutate(lambda d: d["attributes"]["emotion"].pop("options")),
                 "attributes.emotion.options: is required", id="missing_options"),
    pytest.param(_mutate(lambda d: d["attributes"]["appearance"]["options"].append("eyeglasses")),
                 "attributes.appearance.options: option 'eyeglasses' is a duplicate (case-insensitive) of 'Eyeglasses'",
                 id="duplicate_option_case_insensitive"),
    pytest.param(_mutate(lambda d: d["attributes"]["action"]["options"].remove("Pile")),
                 "attributes.action.count: says 44 but 43 options are listed", id="count_mismatch"),
    pytest.param(_mutate(lambda d: d["attributes"]["appearance"]["synonyms"].update(glasses="Eyeglass")),
                 "attributes.appearance.synonyms.glasses: target 'Eyeglass' is not an option of appearance",
                 id="synonym_target_not_an_option"),
    pytest.param(_mutate(lambda d: d["attributes"]["appearance"]["synonyms"].update(male="Female")),
                 "attributes.appearance.synonyms.male: the term reads as the option 'Male'", id="synonym_shadows_option"),
    pytest.param(_mutate(lambda d: d["attributes"]["appearance"]["synonyms"].update(spectacle="Wearing hat")),
                 "reads as the same term as 'spectacles'", id="synonyms_conflict_after_folding_plurals"),
    pytest.param(_mutate(lambda d: d["attributes"]["lighting"]["sentences"]["needs_context"].append("murky")),
                 "attributes.lighting.sentences.needs_context: 'murky' is neither", id="needs_context_unknown_term"),
    pytest.param(_mutate(lambda d: d["attributes"]["action"]["ignore"].append("the rest")),
                 "attributes.action.ignore: 'the rest' reads as a term of action", id="ignore_masks_a_term"),
    pytest.param(_mutate(lambda d: d["attributes"]["lighting"].update(min=9)),
                 "attributes.lighting.min", id="bad_min"),
]


@pytest.mark.parametrize(("make", "message"), BROKEN)
def test_broken_copies_fail_at_load_naming_file_and_key(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "vocabulary.yml"
    path.write_text(yaml.safe_dump(make(), sort_keys=False))
    with pytest.raises(ValueError) as info:
        load_vocabulary(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)


def test_duplicate_yaml_keys_and_bad_files_fail(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yml"
    dup.write_text(DEFAULT_PATH.read_text().replace("      specs: Eyeglasses\n",
                                                    "      specs: Eyeglasses\n      specs: Wearing hat\n"))
    with pytest.raises(ValueError, match=r"dup\.yml: not valid YAML: .*duplicate key 'specs'"):
        load_vocabulary(dup)
    junk = tmp_path / "junk.yml"
    junk.write_text("attributes: [unclosed\n")
    with pytest.raises(ValueError, match=r"junk\.yml: not valid YAML"):
        load_vocabulary(junk)
    with pytest.raises(ValueError, match=r"missing\.yml: cannot read the vocabulary"):
        load_vocabulary(tmp_path / "missing.yml")
