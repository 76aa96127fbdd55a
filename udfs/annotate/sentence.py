"""One CelebV-Text-style sentence from structured values: ``compose_caption(values, vocab)``.

Used by captioners that measure attributes instead of describing them (the CPU ``signals``
backend fills only action, emotion and lighting). The sentence is deterministic: subject
(ethnicity, Old/Chubby/Bald/No beard, Male/Female -> man/woman, else "person"), "with" features
(hair first), "wearing" clothes, actions, emotion and lighting, each in vocabulary order:

    "A person talks and nods under dim lighting."
    "A man with short black hair and eyeglasses, wearing a suit, talks and smiles with a happy
     expression in bright light."

Options without a phrase here (a project's own vocabulary) still read naturally: "Wearing X" ->
"wearing a x", "X hair" -> hair, an action -> its verb in the third person, anything else -> "with x".
"""

from __future__ import annotations

from collections.abc import Iterable

from facevid.udfs.annotate.vocabulary import Vocabulary

EMPTY_CAPTION = "A person's face is shown with no clear action."
_SUBJECT_ADJ = {"Old": "old", "Chubby": "chubby", "Bald": "bald", "No beard": "clean-shaven"}
_HAIR_ORDER = ("length", "texture", "colour")
_HAIR = {"Short hair": ("length", "short"), "Long hair": ("length", "long"),
         "Straight hair": ("texture", "straight"), "Wavy hair": ("texture", "wavy"),
         "Black hair": ("colour", "black"), "Brown hair": ("colour", "brown"),
         "White hair": ("colour", "white"), "Blonde hair": ("colour", "blonde"), "Redhead": ("colour", "red")}
_FEATURE = {"Anchored eyebrow": "arched eyebrows", "Bush eyebrow": "bushy eyebrows", "Lipsticks": "lipstick",
            "Side burn": "sideburns", "Oval face": "an oval face", "Big nose": "a big nose",
            "Double chin": "a double chin", "Goatee": "a goatee", "Mustache": "a mustache", "Mole": "a mole",
            "Blemish": "a blemish", "Pompadour": "a pompadour", "Ponytail": "a ponytail", "Tan": "tanned skin"}
_WEAR_PLURAL = {"Wearing sunglasses"}
_VERB = {"Wag Head": "wags {p} head", "Shake Head": "shakes {p} head", "Close Eyes": "closes {p} eyes",
         "Tilt": "tilts {p} head", "Listen To Music": "listens to music", "Touch": "touches {p} face",
         "Roll": "rolls {p} eyes", "Hold": "holds something", "Throw": "throws something",
         "Clutch": "clutches something"}
_EMOTION = {"Surprise": "surprised", "Fear": "fearful", "Contempt": "contemptuous", "Disgust": "disgusted"}
_LIGHT_ALONE = {"Dim": "under dim lighting", "Dark": "in dark lighting", "Bright": "in bright light",
                "Natural": "in natural light", "Artificial": "under artificial light",
                "Normal": "in normal lighting"}
_POSSESSIVE = {"man": "his", "woman": "her"}


def compose_caption(values: dict, vocab: Vocabulary) -> str:
    """One sentence from ``values`` (attribute -> option, list of options, or None); unknown or
    missing attributes are left out. Talk and Speak together read as "talks"."""
    appearance = _ordered(values.get("appearance"), vocab, "appearance")
    actions = _ordered(values.get("action"), vocab, "action")
    lighting = _lighting(_ordered(values.get("lighting"), vocab, "lighting"))
    emotion = values.get("emotion") if isinstance(values.get("emotion"), str) else None
    ethnicity = values.get("ethnicity") if isinstance(values.get("ethnicity"), str) else None

    noun = _noun(appearance)
    words = [*(_SUBJECT_ADJ[o] for o in appearance if o in _SUBJECT_ADJ), *([ethnicity] if ethnicity else []), noun]
    subject = f"{_article(words[0])} {' '.join(words)}"
    features, clothes = _features(appearance)
    if features:
        subject += f" with {_join(features)}"
    if clothes:
        subject += f", wearing {_join(clothes)},"
    if "Talk" in actions and "Speak" in actions:
        actions.remove("Speak")
    verbs = [_verb(a, _POSSESSIVE.get(noun, "their")) for a in actions]
    mood = _EMOTION.get(emotion, emotion.lower()) if emotion else None
    if verbs:
        predicate = _join(verbs) + (f" with {_article(mood)} {mood} expression" if mood else "")
    elif mood:
        predicate = f"has {_article(mood)} {mood} expression"
    elif subject == "a person":
        subject, predicate = "a person's face", "is shown with no clear action"
    else:
        predicate = "is shown"
    sentence = " ".join(p for p in (subject, predicate, lighting) if p)
    return sentence[0].upper() + sentence[1:] + "."


def _ordered(value: object, vocab: Vocabulary, attr: str) -> list[str]:
    """Distinct options of ``value`` in vocabulary order (unknown ones after, as given)."""
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, Iterable) else []
    items = [i for i in dict.fromkeys(items) if isinstance(i, str) and i.strip()]
    order = {o: n for n, o in enumerate(vocab.options(attr))}
    return sorted(items, key=lambda o: order.get(o, len(order)))


def _noun(appearance: list[str]) -> str:
    male, female = "Male" in appearance, "Female" in appearance
    return "man" if male and not female else "woman" if female and not male else "person"


def _features(appearance: list[str]) -> tuple[list[str], list[str]]:
    hair = {}
    features, clothes = [], []
    for o in appearance:
        if o in ("Male", "Female") or o in _SUBJECT_ADJ:
            continue
        if o in _HAIR:
            hair.setdefault(_HAIR[o][0], []).append(_HAIR[o][1])
        elif o.lower().endswith(" hair"):
            hair.setdefault("colour", []).append(o[:-5].lower())
        elif o.startswith("Wearing "):
            item = o[len("Wearing "):].lower()
            clothes.append(item if o in _WEAR_PLURAL else f"{_article(item)} {item}")
        elif o.startswith("With "):
            item = o[len("With "):].lower()
            clothes.append(f"carrying {_article(item)} {item}")
        else:
            features.append(_FEATURE.get(o, o.lower()))
    if hair:
        features.insert(0, " ".join(w for part in _HAIR_ORDER for w in hair.get(part, [])) + " hair")
    return features, clothes


def _verb(action: str, possessive: str) -> str:
    if action in _VERB:
        return _VERB[action].format(p=possessive)
    words = action.lower().split()
    head = words[0]
    if head.endswith(("s", "sh", "ch", "x", "z")):
        head += "es"
    elif head.endswith("y") and head[-2:-1] not in "aeiou":
        head = head[:-1] + "ies"
    else:
        head += "s"
    return " ".join([head, *words[1:]])


def _lighting(options: list[str]) -> str:
    adjectives = [o for o in options if o not in ("Outdoor", "Daylight")]
    if "Daylight" in options:
        phrase = "in " + " and ".join(a.lower() for a in adjectives) + (" " if adjectives else "") + "daylight"
    elif len(adjectives) == 1:
        phrase = _LIGHT_ALONE.get(adjectives[0], f"in {adjectives[0].lower()} lighting")
    elif adjectives:
        prep = "under" if adjectives[0] in ("Dim", "Artificial") else "in"
        phrase = f"{prep} {' and '.join(a.lower() for a in adjectives)} light"
    else:
        phrase = ""
    if "Outdoor" in options:
        phrase = "outdoors" + (f" {phrase}" if phrase else "")
    return phrase


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _article(word: str) -> str:
    word = word.lower()
    return "an" if word[:1] in "aeiou" and not word.startswith(("eu", "uni", "use", "one")) else "a"
