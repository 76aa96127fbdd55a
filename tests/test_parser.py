"""parse_answer on hand-written VLM-style answers: JSON (strict, in prose, fenced, broken), free
text (key: value lines, plain sentences), synonyms, plurals, misspellings on both sides of the
cut-off, out-of-vocabulary terms kept in oov, cardinality, and the transient parse error."""

from __future__ import annotations

import json

import pytest

from facevid.udfs.annotate.parser import ParsedAnswer, parse_answer
from facevid.udfs.annotate.vocabulary import ATTRIBUTES, load_vocabulary
from facevid.udfs.errors import StageError, classify

VOCAB = load_vocabulary()


def case(id_: str, answer: str, method: str, values: dict, oov: list[str] | None = None,
         caption: str | None = None):
    """One table row: ``values`` lists the attributes the answer states; all others must be None."""
    return pytest.param(answer, method, values, oov or [], caption, id=id_)


CASES = [
    # -- JSON, strict -------------------------------------------------------------------------
    case("valid_json",
         '{"ethnicity": "Asian", "appearance": ["Male", "Short hair", "Black hair"], "lighting": ["Bright"], '
         '"action": ["Talk", "Nod"], "emotion": "Happy", "caption": "An Asian man talks and nods."}',
         "json", {"ethnicity": "Asian", "appearance": ["Male", "Black hair", "Short hair"],  # vocabulary order
                  "lighting": ["Bright"], "action": ["Talk", "Nod"], "emotion": "Happy"},
         caption="An Asian man talks and nods."),
    case("json_in_prose",
         'Sure! Here is the annotation you asked for: {"ethnicity": "White", "appearance": ["Female", '
         '"Long hair"], "lighting": ["Natural"], "action": ["Smile"], "emotion": "Happy", "caption": '
         '"A woman smiles."} Let me know if you need anything else.',
         "json", {"ethnicity": "White", "appearance": ["Female", "Long hair"], "lighting": ["Natural"],
                  "action": ["Smile"], "emotion": "Happy"}, caption="A woman smiles."),
    case("fenced_json",
         '```json\n{\n  "ethnicity": "African",\n  "appearance": ["Male", "Bald", "Wearing suit"],\n'
         '  "lighting": ["Artificial"],\n  "action": ["Talk"],\n  "emotion": "Neutral",\n'
         '  "caption": "A bald man in a suit talks."\n}\n```',
         "json", {"ethnicity": "African", "appearance": ["Male", "Bald", "Wearing suit"],
                  "lighting": ["Artificial"], "action": ["Talk"], "emotion": "Neutral"},
         caption="A bald man in a suit talks."),
    case("fence_without_language",
         'Answer:\n```\n{"ethnicity": "Indian", "appearance": ["Female"], "lighting": ["Dim"], '
         '"action": ["Sing"], "emotion": "Sad"}\n```',
         "json", {"ethnicity": "Indian", "appearance": ["Female"], "lighting": ["Dim"], "action": ["Sing"],
                  "emotion": "Sad"}),
    case("reasoning_block_before_json",
         '<think>The first frame shows a man. I should answer like {"ethnicity": ...}.</think>\n'
         '{"ethnicity": "European", "appearance": ["Male", "Wearing shirt"], "lighting": ["Normal"], '
         '"action": ["Talk"], "emotion": "Neutral"}',
         "json", {"ethnicity": "European", "appearance": ["Male", "Wearing shirt"], "lighting": ["Normal"],
                  "action": ["Talk"], "emotion": "Neutral"}),
    case("nested_answer_object",
         '{"answer": {"ethnicity": "White", "emotion": "Contempt", "action": ["Glare"]}}',
         "json", {"ethnicity": "White", "emotion": "Contempt", "action": ["Glare"]}),
    case("caption_only", '{"caption": "A man talks to the camera."}', "json", {},
         caption="A man talks to the camera."),
    # -- JSON, broken -------------------------------------------------------------------------
    case("missing_closing_brace",
         '{"ethnicity": "Korean", "appearance": ["Female", "Bangs"], "lighting": ["Bright"], '
         '"action": ["Laugh"], "emotion": "Happy"',
         "json_repaired", {"ethnicity": "Korean", "appearance": ["Female", "Bangs"], "lighting": ["Bright"],
                           "action": ["Laugh"], "emotion": "Happy"}),
    case("trailing_commas",
         '{"ethnicity": "Latino", "appearance": ["Male", "Goatee",], "lighting": ["Outdoor", "Daylight",], '
         '"action": ["Talk",], "emotion": "Angry",}',
         "json_repaired", {"ethnicity": "Latino", "appearance": ["Male", "Goatee"],
                           "lighting": ["Outdoor", "Daylight"], "action": ["Talk"], "emotion": "Angry"}),
    case("single_quotes_and_python_literals",
         "{'ethnicity': 'Japanese', 'appearance': ['Female', 'Ponytail'], 'lighting': ['Normal'], "
         "'action': [], 'emotion': None, 'caption': 'A woman\\'s face in normal light.'}",
         "json_repaired", {"ethnicity": "Japanese", "appearance": ["Female", "Ponytail"],
                           "lighting": ["Normal"], "action": []},
         caption="A woman's face in normal light."),
    case("unquoted_keys_and_values",
         "{ethnicity: Arab, appearance: [Male, Mustache], lighting: [Dim], action: [Nod, Gaze], emotion: Neutral}",
         "json_repaired", {"ethnicity": "Arab", "appearance": ["Male", "Mustache"], "lighting": ["Dim"],
                           "action": ["Gaze", "Nod"], "emotion": "Neutral"}),
    case("typographic_quotes",
         "{\u201cethnicity\u201d: \u201cChinese\u201d, \u201cemotion\u201d: \u201cSurprise\u201d, "
         "\u201caction\u201d: [\u201cTalk\u201d]}",
         "json_repaired", {"ethnicity": "Chinese", "emotion": "Surprise", "action": ["Talk"]}),
    # -- cardinality --------------------------------------------------------------------------
    case("list_for_ethnicity",
         '{"ethnicity": ["Asian", "Chinese"], "emotion": "Happy", "action": ["Talk"]}',
         "json", {"ethnicity": "Asian", "emotion": "Happy", "action": ["Talk"]},
         ["ethnicity: Chinese (extra, one allowed)"]),
    case("one_item_list_for_emotion",
         '{"ethnicity": "Mexican", "emotion": ["Happy"], "action": ["Smile"]}',
         "json", {"ethnicity": "Mexican", "emotion": "Happy", "action": ["Smile"]}),
    case("comma_separated_string_for_many",
         '{"appearance": "Male, Short hair, Eyeglasses", "action": "talk, nod", "lighting": "bright", '
         '"emotion": "neutral"}',
         "json", {"appearance": ["Male", "Short hair", "Eyeglasses"], "action": ["Talk", "Nod"],
                  "lighting": ["Bright"], "emotion": "Neutral"}),
    case("two_emotions_in_a_string", '{"emotion": "happy, sad", "action": ["Talk"]}',
         "json", {"emotion": "Happy", "action": ["Talk"]}, ["emotion: Sad (extra, one allowed)"]),
    case("three_emotions_in_a_list_with_a_repeat", '{"emotion": ["Sad", "Angry", "sad"], "action": ["Frown"]}',
         "json", {"emotion": "Sad", "action": ["Frown"]}, ["emotion: Angry (extra, one allowed)"]),
    case("empty_markers",
         '{"ethnicity": "unknown", "appearance": [], "lighting": ["Bright"], "action": "none", "emotion": null}',
         "json", {"appearance": [], "lighting": ["Bright"], "action": []}),
    # -- synonyms, plurals, keys --------------------------------------------------------------
    case("synonyms_appearance_man",
         '{"appearance": ["guy", "spectacles", "clean-shaven", "bushy eyebrows", "sideburns", "moustache", '
         '"grey hair"]}',
         "json", {"appearance": ["No beard", "Male", "Eyeglasses", "Bush eyebrow", "Side burn", "White hair",
                                 "Mustache"]}),
    case("synonyms_appearance_woman",
         '{"appearance": ["lady", "lipstick", "earring", "shades", "blond", "makeup"]}',
         "json", {"appearance": ["Female", "Heavy makeup", "Lipsticks", "Earrings", "Blonde hair",
                                 "Wearing sunglasses"]}),
    case("synonyms_actions",
         '{"action": ["speaking", "talking", "grinning", "blinking", "tilting head", "wagging", '
         '"shaking his head"]}',
         "json", {"action": ["Talk", "Smile", "Wag Head", "Shake Head", "Close Eyes", "Speak", "Tilt"]}),
    case("synonyms_emotion_lighting_ethnicity",
         '{"emotion": "joyful", "lighting": ["sunlight", "studio lighting", "low light", "well-lit"], '
         '"ethnicity": "caucasian"}',
         "json", {"emotion": "Happy", "lighting": ["Bright", "Artificial", "Dim", "Daylight"],
                  "ethnicity": "White"}),
    case("synonyms_hispanic_scared_winking",
         '{"ethnicity": "Hispanic", "emotion": "scared", "action": ["winking"]}',
         "json", {"ethnicity": "Latino", "emotion": "Fear", "action": ["Wink"]}),
    case("synonyms_middle_eastern_disgusted",
         '{"ethnicity": "Middle Eastern", "emotion": "disgusted", "action": ["laughing", "singing"]}',
         "json", {"ethnicity": "Arab", "emotion": "Disgust", "action": ["Sing", "Laugh"]}),
    case("plurals_and_inflections",
         '{"appearance": ["earring", "braid", "tattoo", "piercing", "wrinkle", "scar", "mustaches"], '
         '"action": ["nods", "winks", "smiles"]}',
         "json", {"appearance": ["Earrings", "Mustache", "Tattoos", "Piercings", "Scars", "Wrinkles", "Braids"],
                  "action": ["Smile", "Nod", "Wink"]}),
    case("answer_key_aliases",
         '{"race": "Black", "gender": "female", "Actions": ["Talk"], "mood": "angry", '
         '"description": "A woman talks angrily."}',
         "json", {"ethnicity": "African", "appearance": ["Female"], "action": ["Talk"], "emotion": "Angry"},
         caption="A woman talks angrily."),
    case("compound_terms",
         '{"appearance": ["short black hair", "wearing a black suit and a red tie", "old man"], '
         '"action": ["nodding head"]}',
         "json", {"appearance": ["Male", "Black hair", "Short hair", "Old", "Wearing suit", "Wearing tie"],
                  "action": ["Nod"]}),
    # -- out of vocabulary: kept, never dropped -------------------------------------------------
    case("beard_is_not_no_beard",
         '{"appearance": ["Male", "beard", "full beard", "Mustache"], "emotion": "Neutral"}',
         "json", {"appearance": ["Male", "Mustache"], "emotion": "Neutral"},
         ["appearance: beard (not an option)", "appearance: full beard (not an option)"]),
    case("misspellings_within_cutoff",
         '{"appearance": ["eyeglases", "Mustach", "Short hiar"], "emotion": "suprised", "lighting": ["Artficial"]}',
         "json", {"appearance": ["Short hair", "Eyeglasses", "Mustache"], "emotion": "Surprise",
                  "lighting": ["Artificial"]}),
    case("misspellings_outside_cutoff",
         '{"ethnicity": "Asain", "emotion": "nuetral", "action": ["nodd", "Talk"], "lighting": ["Daylihgt"]}',
         "json", {"action": ["Talk"], "lighting": []},
         ["ethnicity: Asain", "emotion: nuetral", "action: nodd", "lighting: Daylihgt"]),
    case("out_of_vocabulary_terms_and_keys",
         '{"appearance": ["Male", "purple hair", "freckles"], "action": ["juggling", "Talk"], '
         '"emotion": "Happy", "age": "30s"}',
         "json", {"appearance": ["Male"], "action": ["Talk"], "emotion": "Happy"},
         ["appearance: purple hair", "appearance: freckles (not an option)", "action: juggling", "age: 30s"]),
    case("negated_terms",
         '{"appearance": ["Female", "no hat", "no glasses"], "action": ["not smiling", "Talk"]}',
         "json", {"appearance": ["Female"], "action": ["Talk"]},
         ["appearance: no hat (negated)", "appearance: no glasses (not an option)",
          "action: not smiling (negated)"]),
    # -- free text: key: value lines ------------------------------------------------------------
    case("text_key_value_lines",
         "Ethnicity: Asian\nAppearance: female, long hair, earrings\nLighting: dim\nActions - talking, nodding\n"
         "Emotion: happy\nCaption: A woman with long hair talks and nods.",
         "text", {"ethnicity": "Asian", "appearance": ["Female", "Long hair", "Earrings"], "lighting": ["Dim"],
                  "action": ["Talk", "Nod"], "emotion": "Happy"},
         caption="A woman with long hair talks and nods."),
    case("text_markdown_bullets",
         "Here is my analysis:\n- **Ethnicity**: White\n- **Appearance**: Male, Wearing jacket\n"
         "- **Emotion**: Sad\n- **Action**: Sigh",
         "text", {"ethnicity": "White", "appearance": ["Male", "Wearing jacket"], "emotion": "Sad",
                  "action": ["Sigh"]}),
    case("text_keys_in_sentences",
         "Ethnicity: Indian. Appearance: male, beard, short hair, glasses, suit and tie. Lighting: bright, "
         "artificial. Action: speaking, nodding. Emotion: neutral.",
         "text", {"ethnicity": "Indian", "appearance": ["Male", "Short hair", "Eyeglasses", "Wearing suit", "Wearing tie"],
                  "lighting": ["Bright", "Artificial"], "action": ["Nod", "Speak"], "emotion": "Neutral"},
         oov=["appearance: beard (not an option)"]),
    case("text_several_keys_on_one_line",
         "Ethnicity: Indian, Emotion: happy, Action: talking and smiling, Lighting: daylight",
         "text", {"ethnicity": "Indian", "emotion": "Happy", "action": ["Talk", "Smile"],
                  "lighting": ["Daylight"]}),
    case("text_json_missing_opening_brace",
         '"ethnicity": "Korean",\n"appearance": ["Female", "Straight hair"],\n"emotion": "neutral"}',
         "text", {"ethnicity": "Korean", "appearance": ["Female", "Straight hair"], "emotion": "Neutral"}),
    case("text_two_emotions",
         "Emotion: happy, slightly surprised\nAction: talking",
         "text", {"emotion": "Happy", "action": ["Talk"]}, ["emotion: Surprise (extra, one allowed)"]),
    # -- free text: plain sentences -------------------------------------------------------------
    case("plain_sentence",
         "A young white man with short black hair and glasses is talking and smiling in a brightly lit room.",
         "text", {"ethnicity": "White", "appearance": ["Male", "Black hair", "Short hair", "Eyeglasses"],
                  "lighting": ["Bright"], "action": ["Talk", "Smile"]},
         ["appearance: young (not an option)"],
         caption="A young white man with short black hair and glasses is talking and smiling in a brightly "
                 "lit room."),
    case("sentence_ambiguous_words_need_context",  # white shirt is no ethnicity, a bright smile no lighting
         "A woman in a white shirt with a bright smile talks.",
         "text", {"appearance": ["Female", "Wearing shirt"], "action": ["Talk", "Smile"]},
         caption="A woman in a white shirt with a bright smile talks."),
    case("sentence_negation_and_age",
         "A 30-year-old man is not smiling; he nods slowly under dim light.",
         "text", {"appearance": ["Male"], "lighting": ["Dim"], "action": ["Nod"]},
         ["action: not smiling (negated)"],
         caption="A 30-year-old man is not smiling; he nods slowly under dim light."),
    case("sentence_ethnicity_with_context",
         "An Asian woman with dark hair laughs happily outdoors.",
         "text", {"ethnicity": "Asian", "appearance": ["Female"], "lighting": ["Outdoor"], "action": ["Laugh"],
                  "emotion": "Happy"},
         ["appearance: dark hair (not an option)"],
         caption="An Asian woman with dark hair laughs happily outdoors."),
]


@pytest.mark.parametrize(("answer", "method", "values", "oov", "caption"), CASES)
def test_parse_answer(answer: str, method: str, values: dict, oov: list[str], caption: str | None) -> None:
    got = parse_answer(answer, VOCAB)
    assert isinstance(got, ParsedAnswer)
    assert got.values == {a: values.get(a) for a in ATTRIBUTES}
    assert got.oov == oov
    assert got.caption == caption
    assert got.method == method
    for attr, value in got.values.items():
        assert value is None or VOCAB.is_valid(attr, value) or value == [], (attr, value)


ERRORS = [
    pytest.param("", id="empty"),
    pytest.param("  \n\t ", id="whitespace"),
    pytest.param("asdf qwerty 1234", id="garbage"),
    pytest.param("I'm sorry, but I can't help with identifying people.", id="refusal"),
    pytest.param('{"foo": "bar", "score": 3}', id="json_without_known_keys"),
    pytest.param('{"ethnicity": null, "emotion": "unknown", "action": [], "appearance": "n/a"}',
                 id="json_that_says_nothing"),
    pytest.param("<think>Let me look at the frames first. The person seems", id="only_reasoning"),
]


@pytest.mark.parametrize("answer", ERRORS)
def test_unparseable_answers_are_transient_parse_errors(answer: str) -> None:
    with pytest.raises(StageError) as info:
        parse_answer(answer, VOCAB)
    err = info.value
    assert err.category == "parse" and err.transient is True
    assert classify(err).kind == "transient"
    if answer.strip():
        assert answer.strip()[:20] in err.detail  # the detail quotes the answer's start


def test_cutoff_is_the_declared_fuzzy_threshold() -> None:
    answer = '{"appearance": ["eyeglases"], "lighting": ["Daylihgt"], "emotion": "Happy"}'
    default = parse_answer(answer, VOCAB)
    assert default.values["appearance"] == ["Eyeglasses"] and default.oov == ["lighting: Daylihgt"]
    strict = parse_answer(answer, VOCAB, cutoff=0.95)
    assert strict.values["appearance"] == [] and strict.oov == ["appearance: eyeglases", "lighting: Daylihgt"]
    loose = parse_answer(answer, VOCAB, cutoff=0.8)
    assert loose.values["lighting"] == ["Daylight"] and loose.oov == []


def test_every_option_and_synonym_of_the_vocabulary_parses_to_its_target() -> None:
    for name, a in VOCAB.attributes.items():
        for term, target in [*((o, o) for o in a.options), *a.synonyms.items()]:
            got = parse_answer(json.dumps({name: [term], "caption": "x"}), VOCAB)
            if target is None:
                assert got.oov == [f"{name}: {term} (not an option)"] and not got.values[name], (name, term)
            else:
                assert got.values[name] == ([target] if a.many else target), (name, term, got.values[name])
                assert got.oov == [], (name, term, got.oov)
