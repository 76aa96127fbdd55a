"""compose_caption: one deterministic CelebV-Text-style sentence from structured values, which
reads back through the parser to the same values."""

from __future__ import annotations

import pytest

from facevid.udfs.annotate.parser import parse_answer
from facevid.udfs.annotate.sentence import EMPTY_CAPTION, compose_caption
from facevid.udfs.annotate.vocabulary import load_vocabulary

VOCAB = load_vocabulary()


@pytest.mark.parametrize(("values", "sentence"), [
    ({"action": ["Talk", "Nod"], "lighting": ["Dim"]}, "A person talks and nods under dim lighting."),
    ({"appearance": ["Male", "Short hair", "Black hair", "Eyeglasses", "Wearing suit"],
      "action": ["Smile", "Talk"], "emotion": "Happy", "lighting": ["Bright"]},
     "A man with short black hair and eyeglasses, wearing a suit, talks and smiles with a happy expression "
     "in bright light."),
    ({}, EMPTY_CAPTION),
    ({"ethnicity": None, "appearance": None, "lighting": None, "action": [], "emotion": None}, EMPTY_CAPTION),
    ({"appearance": ["Female"], "emotion": "Neutral"}, "A woman has a neutral expression."),
    ({"lighting": ["Daylight", "Outdoor"]}, "A person's face is shown with no clear action outdoors in daylight."),
    ({"action": ["Speak", "Talk", "Close Eyes"], "appearance": ["Female"]}, "A woman talks and closes her eyes."),
    ({"action": ["Shake Head", "Wink", "Wag Head", "Tilt"], "emotion": "Surprise", "lighting": ["Artificial", "Dim"]},
     "A person wags their head, shakes their head, winks and tilts their head with a surprised expression "
     "under artificial and dim light."),
    ({"ethnicity": "Asian", "appearance": ["Old", "Female", "Wavy hair", "Long hair", "Blonde hair", "Earrings",
                                            "Wearing sunglasses", "With purse"], "action": ["Study"]},
     "An old Asian woman with long wavy blonde hair and earrings, wearing sunglasses and carrying a purse, studies."),
    ({"ethnicity": "European", "appearance": ["Male", "Female"]}, "A European person is shown."),
])
def test_compose_caption(values: dict, sentence: str) -> None:
    assert compose_caption(values, VOCAB) == sentence


def test_compose_is_deterministic_whatever_the_input_order() -> None:
    a = {"action": ["Nod", "Talk", "Smile"], "lighting": ["Bright", "Natural"], "emotion": "Happy"}
    b = {"emotion": "Happy", "lighting": ["Natural", "Bright", "Natural"], "action": ["Smile", "Talk", "Nod", "Nod"]}
    assert compose_caption(a, VOCAB) == compose_caption(b, VOCAB)
    assert compose_caption(a, VOCAB) == "A person talks, smiles and nods with a happy expression in bright and natural light."


SIGNAL_ACTIONS = ["Talk", "Smile", "Wag Head", "Nod", "Shake Head", "Close Eyes", "Wink", "Tilt"]  # vocabulary order


@pytest.mark.parametrize("lighting", [[o] for o in VOCAB.options("lighting")] + [["Bright", "Natural"], ["Outdoor", "Daylight"]])
@pytest.mark.parametrize("emotion", [None, *VOCAB.options("emotion")])
def test_signals_captions_read_back_to_their_values(lighting: list[str], emotion: str | None) -> None:
    values = {"action": SIGNAL_ACTIONS, "lighting": lighting, "emotion": emotion}
    got = parse_answer(compose_caption(values, VOCAB), VOCAB)
    assert got.method == "text" and got.oov == []
    assert got.values == {"ethnicity": None, "appearance": None, "action": SIGNAL_ACTIONS,
                          "lighting": lighting, "emotion": emotion}
