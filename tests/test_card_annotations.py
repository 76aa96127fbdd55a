"""The dataset card's annotation sections (distributions, keyword cloud, speech, lip-sync, agreement
with declared labels) on real Delta tables and the real engine, and declared labels through ingest.

The card tests build a small synthetic gold: 20 clips of 5 videos (4 clips of 4 s each), sources
``celebv`` (videos a1, a2, a3) and ``hdtf`` (b1, b2), splits train (a1, a2, b1) and test (a3, b2),
with the new annotation columns. Every expected number below is counted by hand from ``CLIPS``
(or, for the distributions, cross-checked with a plain ``Counter`` over it).
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import cv2
import pandas as pd
import pytest
import yaml
from conftest import make_context, rows, write_config

from facevid.jobs.config import ConfigError, Source
from facevid.jobs.report_agreement import agreement, clip_labels
from facevid.jobs.report_annotations import (
    ALL,
    UNSET,
    attribute_distributions,
    caption_words,
    distribution_table,
    lipsync_histogram,
    speech_shares,
    wordcloud_png,
)
from facevid.jobs.report_html import build_report
from facevid.jobs.runner import run_pipeline
from facevid.jobs.stages.bronze.manifest import LABEL_ATTRIBUTES, declared_labels
from facevid.jobs.stages.gold.select import GOLD_COLUMNS as CURRENT_GOLD

pytestmark = [pytest.mark.spark]

VOCABULARY = Path(__file__).resolve().parents[2] / "shared" / "vocabulary" / "dh_facevid_attributes.yml"
NEW_COLUMNS = {"ethnicity": "string", "appearance": "array<string>", "lighting": "array<string>",
               "action": "array<string>", "emotion": "string", "caption": "string", "caption_backend": "string",
               "av_offset_ms": "double", "av_confidence": "double", "speech_frac": "double", "has_speech": "boolean"}
# gold as it was before annotations (the card must still render it), plus the annotation columns
_FIRST_NEW = list(CURRENT_GOLD).index("ethnicity")
GOLD_COLUMNS = {c: t for i, (c, t) in enumerate(CURRENT_GOLD.items()) if i < _FIRST_NEW or c == "published_at"}
VIDEOS = {"a1": ("celebv", "train"), "a2": ("celebv", "train"), "a3": ("celebv", "test"),
          "b1": ("hdtf", "train"), "b2": ("hdtf", "test")}
# (video, clip index, ethnicity, appearance, lighting, action, emotion, has_speech, av_offset_ms, caption)
CLIPS = [
    ("a1", 0, "Asian", ["Male", "Short hair"], ["Bright"], ["Talk", "Nod"], "Happy", True, 0.0,
     "The man with short hair is talking and nodding happily"),
    ("a1", 1, "Asian", ["Male"], ["Bright", "Natural"], ["Talk"], "Happy", True, 40.0,
     "A man is talking in bright natural light"),
    ("a1", 2, "White", ["Male", "Short hair", "Eyeglasses"], ["Natural"], ["Smile"], "Neutral", False, None,
     "The man's eyeglasses shine while he is smiling"),
    ("a1", 3, None, None, None, None, None, None, None, None),  # the VLM answered nothing usable
    ("a2", 0, "White", ["Female", "Long hair"], ["Dim"], ["Talk"], "Sad", True, -80.0,
     "A woman with long hair is talking sadly in dim light"),
    ("a2", 1, "White", ["Female"], ["Dim"], ["Talk", "Smile"], "Sad", True, 120.0,
     "A woman is talking and smiling"),
    ("a2", 2, "Asian", ["Female", "Long hair"], ["Daylight"], ["Nod"], "Happy", False, 400.0,
     "A woman with long hair is nodding in daylight"),
    ("a2", 3, "White", [], ["Dim"], ["Talk", "Smile"], "Neutral", True, 20.0,
     "A woman is talking and smiling in dim light"),
    ("a3", 0, "Indian", ["Male", "Bald"], ["Artificial"], ["Talk", "Shake Head"], "Angry", True, 10.0,
     "A bald man is talking angrily and shaking his head"),
    ("a3", 1, "Indian", ["Male"], ["Artificial"], ["Talk"], "Angry", True, None,
     "A man is talking angrily"),
    ("a3", 2, "Indian", ["Male", "Bald"], ["Normal"], ["Gaze"], "Neutral", False, None,
     "A bald man gazes calmly"),
    ("a3", 3, "Indian", ["Male", "Bald"], ["Normal"], ["Talk"], "Neutral", True, -30.0,
     "A bald man is talking calmly"),
    ("b1", 0, "African", ["Male", "Black hair"], ["Outdoor", "Daylight"], ["Speak"], "Happy", True, 60.0,
     "A man with black hair speaks outdoors in daylight"),
    ("b1", 1, "African", ["Male", "Black hair"], ["Outdoor"], ["Smile"], "Happy", False, None,
     "A man with black hair is smiling outdoors"),
    ("b1", 2, "African", ["Male"], ["Outdoor"], ["Talk"], "Surprise", True, 0.0,
     "A surprised man is talking outdoors"),
    ("b1", 3, "African", ["Male"], ["Daylight"], [], "Neutral", False, None,
     "A man sits in daylight"),
    ("b2", 0, "Latino", ["Female", "Blonde hair"], ["Bright"], ["Talk"], "Happy", True, 700.0,
     "A woman with blonde hair is talking happily"),
    ("b2", 1, "Latino", ["Female"], ["Bright"], ["Talk"], "Happy", True, 30.0,
     "A woman is talking happily in bright light"),
    ("b2", 2, "Latino", ["Female", "Blonde hair"], ["Bright", "Artificial"], ["Laugh"], "Happy", False, None,
     "A woman with blonde hair is laughing"),
    ("b2", 3, "Latino", ["Female"], ["Bright"], ["Talk", "Nod"], "Sad", True, -40.0,
     "A woman is talking sadly and nodding"),
]
FIELDS = ("video", "i", "ethnicity", "appearance", "lighting", "action", "emotion", "has_speech", "av_offset_ms",
          "caption")


def clip_id(video: str, i: int) -> str:
    return f"{video}_{i * 4000:08d}_{(i + 1) * 4000:08d}"


def gold_rows(annotated: bool = True) -> pd.DataFrame:
    out = []
    for c in CLIPS:
        r = dict(zip(FIELDS, c, strict=True))
        source, split = VIDEOS[r["video"]]
        row = {col: None for col in GOLD_COLUMNS}
        row.update(clip_id=clip_id(r["video"], r["i"]), video_id=r["video"], source=source, split=split,
                   start_s=4.0 * r["i"], end_s=4.0 * r["i"] + 4, duration_s=4.0, identity_id=f"id_{r['video']}")
        if annotated:
            row.update({k: r[k] for k in ("ethnicity", "appearance", "lighting", "action", "emotion",
                                          "has_speech", "av_offset_ms", "caption")})
            row.update(caption_backend="vlm" if source == "celebv" else "signals",
                       av_confidence=None if r["av_offset_ms"] is None else 0.7,
                       speech_frac=None if r["has_speech"] is None else (0.8 if r["has_speech"] else 0.05))
        out.append(row)
    return pd.DataFrame(out)


def write_table(ctx, table: str, pdf: pd.DataFrame, types: dict[str, str]) -> None:
    ddl = ", ".join(f"{k} {v}" for k, v in types.items())
    pdf = pdf[list(types)].astype(object).where(pdf[list(types)].notna(), None)
    ctx.lake.append(table, ctx.spark.createDataFrame(pdf, ddl))


def labels(**kw) -> str:
    return json.dumps(kw, sort_keys=True)


# Declared labels (source celebv only) with known mistakes of the backend:
# a1: whole video (lower-case ethnicity: compared case-insensitively); a second file of a1 with a
#     larger URI declares something else and is ignored.
# a2: whole-video ethnicity; span [4.5, 7.5] -> clip 1 (overlap 3 s); span [7, 13] -> clip 2 (4 s,
#     vs 1 s with clips 1 and 3).
# a3: a span whose best clip [16, 20) is a silver clip that did not reach gold: grades nothing.
FILES = [
    ("/src/a1.mp4", "a1", labels(ethnicity="asian", appearance=["Male", "Short hair"], action=["Talk"])),
    ("/src/z_copy_of_a1.mp4", "a1", labels(ethnicity="Indian")),
    ("/src/a2.mp4", "a2", labels(ethnicity="White", spans=[
        {"start_s": 4.5, "end_s": 7.5, "emotion": "Sad", "action": ["Talk", "Smile"]},
        {"start_s": 7.0, "end_s": 13.0, "emotion": "Neutral"}])),
    ("/src/a3.mp4", "a3", labels(spans=[{"start_s": 15.5, "end_s": 20.0, "emotion": "Angry"}])),
    ("/src/b1.mp4", "b1", None),
    ("/src/b2.mp4", "b2", None),
]


@pytest.fixture(scope="module")
def card_lake(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("card")
    ctx = make_context(engine, write_config(tmp, tmp / "lake"), [str(tmp)])
    gold = gold_rows()
    write_table(ctx, "gold.clips", gold, {**GOLD_COLUMNS, **NEW_COLUMNS})
    silver = pd.concat([gold[["clip_id", "video_id", "start_s", "end_s", "duration_s"]], pd.DataFrame([
        {"clip_id": "a3_16000_20000", "video_id": "a3", "start_s": 16.0, "end_s": 20.0, "duration_s": 4.0}])])
    write_table(ctx, "silver.clips", silver.assign(error=None), {"clip_id": "string", "video_id": "string",
                "start_s": "double", "end_s": "double", "duration_s": "double", "error": "string"})
    files = pd.DataFrame(FILES, columns=["uri", "video_id", "declared_labels"]).assign(error=None)
    write_table(ctx, "bronze.files", files, {"uri": "string", "video_id": "string", "declared_labels": "string",
                                             "error": "string"})
    return ctx


def test_label_attributes_match_the_vocabulary() -> None:
    if not VOCABULARY.exists():
        pytest.skip(f"vocabulary not found at {VOCABULARY}")
    vocab = yaml.safe_load(VOCABULARY.read_text())["attributes"]
    assert set(vocab) == set(LABEL_ATTRIBUTES)
    for attr, card in LABEL_ATTRIBUTES.items():
        assert ("one" if vocab[attr]["kind"].endswith(", one") else "many") == card, attr
    for c in CLIPS:  # the synthetic gold uses vocabulary terms only
        r = dict(zip(FIELDS, c, strict=True))
        for attr in LABEL_ATTRIBUTES:
            values = r[attr] if isinstance(r[attr], list) else [r[attr]] if r[attr] else []
            assert set(values) <= set(vocab[attr]["options"]), (attr, values)


def test_attribute_distributions_per_source_and_split(card_lake) -> None:
    gold = card_lake.current("gold.clips")
    dist = attribute_distributions(gold)
    got = {(r.attribute, r.source, r.split, r.value): r.clips for r in dist.itertuples()}
    expected: Counter = Counter()
    groups: Counter = Counter()
    for c in CLIPS:
        r = dict(zip(FIELDS, c, strict=True))
        source, split = VIDEOS[r["video"]]
        for s, p in ((source, split), (source, ALL), (ALL, split), (ALL, ALL)):
            groups[s, p] += 1
            for attr in LABEL_ATTRIBUTES:
                values = r[attr] if isinstance(r[attr], list) else [r[attr]] if r[attr] else []
                for v in values or [UNSET]:
                    expected[attr, s, p, v] += 1
    assert got == dict(expected)
    # by hand: 8 of 20 clips are Happy; 2 clips have no appearance tags (a1 clip 3 null, a2 clip 3 empty)
    assert got["emotion", ALL, ALL, "Happy"] == 8 and got["appearance", "celebv", "train", UNSET] == 2
    assert got["action", "celebv", "train", "Talk"] == 5 and got["action", "hdtf", "test", "Talk"] == 3
    assert got["lighting", "hdtf", ALL, "Bright"] == 4 and got["action", "hdtf", "train", UNSET] == 1
    shares = {(r.attribute, r.source, r.split, r.value): r.share for r in dist.itertuples()}
    assert shares["emotion", ALL, ALL, "Happy"] == 8 / 20
    assert shares["action", "celebv", "train", "Talk"] == 5 / 8  # of the 8 clips of celebv/train
    assert all(shares[k] == n / groups[k[1], k[2]] for k, n in got.items())
    table = distribution_table(dist, "emotion")
    assert list(table.columns) == ["value", ALL, "celebv / test", "celebv / train", "hdtf / test", "hdtf / train"]
    assert table.iloc[0].tolist() == ["Happy", "8 (40%)", "0", "3 (38%)", "3 (75%)", "2 (50%)"]
    assert table["value"].iloc[-1] == UNSET


def test_speech_shares_and_the_lipsync_histogram(card_lake) -> None:
    gold = card_lake.current("gold.clips")
    shares = speech_shares(gold).set_index("source")
    assert shares.loc["celebv", ["clips", "speech_measured", "with_speech", "action_annotated", "talking"]].tolist() \
        == [12, 11, 8, 11, 8]
    assert shares.loc["hdtf", ["clips", "speech_measured", "with_speech", "action_annotated", "talking"]].tolist() \
        == [8, 8, 5, 8, 5]  # b1 clip 0 talks with "Speak"
    assert shares.loc[ALL, ["clips", "with_speech", "talking"]].tolist() == [20, 13, 13]
    assert shares.loc["celebv", "speech_share"] == pytest.approx(8 / 11)
    assert shares.loc[ALL, "mean_speech_frac"] == pytest.approx((13 * 0.8 + 6 * 0.05) / 19)

    hist = lipsync_histogram(gold)
    # clips with speech: 13; with an offset: 12 (a3 clip 1 has none); a2 clip 2 (no speech, 400 ms) is left out
    assert hist["n_speech"] == 13 and hist["n_measured"] == 12 and sum(hist["counts"]) == 12
    assert dict(zip(hist["centres"], hist["counts"], strict=True)) == {
        -80.0: 1, -40.0: 2, 0.0: 3, 40.0: 3, 80.0: 1, 120.0: 1, 720.0: 1}


def test_caption_keywords_and_the_wordcloud(card_lake, tmp_path: Path) -> None:
    gold = card_lake.current("gold.clips")
    words = caption_words(gold, top_n=5)
    # talking in 12 captions, man 11 (man's -> man), woman 8, hair 7, light 4 (ties smiling 4: by word);
    # "the", "with", "his", "while" are stop words, "a", "is", "in" too short
    assert words.to_dict("records") == [{"word": "talking", "count": 12}, {"word": "man", "count": 11},
                                        {"word": "woman", "count": 8}, {"word": "hair", "count": 7},
                                        {"word": "light", "count": 4}]
    every = caption_words(gold, top_n=500)
    assert not {"the", "with", "is", "and", "his", "he"} & set(every["word"])
    assert every["count"].sum() == sum(len([w for w in re.split(r"[^a-z']+", (c[-1] or "").lower().replace("'s", ""))
                                            if len(w) >= 3 and w not in {"the", "with", "and", "his", "while"}])
                                       for c in CLIPS)
    name = wordcloud_png(tmp_path, every)
    image = cv2.imread(str(tmp_path / name))
    assert image is not None and image.shape == (400, 800, 3) and image.std() > 10
    first = (tmp_path / name).read_bytes()
    wordcloud_png(tmp_path, every)
    assert (tmp_path / name).read_bytes() == first  # deterministic: a fixed random_state


def test_declared_spans_go_to_the_clip_they_overlap_most(card_lake) -> None:
    gold = card_lake.current("gold.clips")
    got = {r["clip_id"]: r for r in (x.asDict() for x in clip_labels(card_lake, gold).collect())}
    assert sorted(got) == sorted([clip_id("a1", i) for i in range(4)] + [clip_id("a2", i) for i in range(4)])
    assert got[clip_id("a1", 0)]["ethnicity"] == "asian"  # the smaller URI's labels win
    assert got[clip_id("a2", 1)]["emotion"] == "Sad" and got[clip_id("a2", 1)]["action"] == ["Talk", "Smile"]
    assert got[clip_id("a2", 2)]["emotion"] == "Neutral" and got[clip_id("a2", 2)]["ethnicity"] == "White"
    assert got[clip_id("a2", 0)]["emotion"] is None and got[clip_id("a2", 3)]["emotion"] is None


def test_agreement_of_the_backend_with_declared_labels(card_lake) -> None:
    summary, per_label = agreement(card_lake, card_lake.current("gold.clips"))
    s = summary.set_index("attribute")
    assert list(s.index) == ["ethnicity", "appearance", "action", "emotion"]  # nothing declares lighting
    assert set(summary["source"]) == {"celebv"} and set(summary["backend"]) == {"vlm"}
    # ethnicity: 8 labelled clips (a1 x4 asian, a2 x4 White); right on a1/0, a1/1, a2/0, a2/1, a2/3;
    # wrong on a1/2 (White) and a2/2 (Asian); a1/3 gave no answer
    assert s.loc["ethnicity", ["labelled", "answered"]].tolist() == [8, 7]
    assert s.loc["ethnicity", "accuracy"] == 5 / 8
    assert s.loc["emotion", ["labelled", "answered", "accuracy"]].tolist() == [2, 2, 0.5]  # a2/2 says Happy
    # appearance (a1 declares Male, Short hair on 4 clips): male tp 3 fn 1; short hair tp 2 fn 2; eyeglasses fp 1
    assert s.loc["appearance", ["labelled", "answered"]].tolist() == [4, 3]
    assert s.loc["appearance", "micro_precision"] == pytest.approx(5 / 6)
    assert s.loc["appearance", "micro_recall"] == pytest.approx(5 / 8)
    assert s.loc["appearance", "micro_f1"] == pytest.approx(10 / 14)
    assert s.loc["appearance", "macro_f1"] == pytest.approx((6 / 7 + 4 / 6 + 0) / 3)
    # action (a1 x4 Talk, a2/1 Talk;Smile): talk tp 3 fn 2; smile tp 1 fp 1; nod fp 1
    assert s.loc["action", ["labelled", "answered"]].tolist() == [5, 4]
    assert s.loc["action", "micro_f1"] == pytest.approx(8 / 12)
    assert s.loc["action", "macro_f1"] == pytest.approx((6 / 8 + 0 + 2 / 3) / 3)
    assert pd.isna(s.loc["action", "accuracy"]) and pd.isna(s.loc["emotion", "macro_f1"])
    labels_ = per_label.set_index(["attribute", "label"])[["tp", "fp", "fn"]]
    assert labels_.to_dict("index") == {
        ("appearance", "eyeglasses"): {"tp": 0, "fp": 1, "fn": 0}, ("appearance", "male"): {"tp": 3, "fp": 0, "fn": 1},
        ("appearance", "short hair"): {"tp": 2, "fp": 0, "fn": 2}, ("action", "nod"): {"tp": 0, "fp": 1, "fn": 0},
        ("action", "smile"): {"tp": 1, "fp": 1, "fn": 0}, ("action", "talk"): {"tp": 3, "fp": 0, "fn": 2}}
    talk = per_label[per_label["label"] == "talk"].iloc[0]
    assert talk["precision"] == 1.0 and talk["recall"] == 3 / 5


def test_the_card_shows_the_annotation_sections(card_lake, tmp_path: Path) -> None:
    page = build_report(card_lake, tmp_path / "card", n_examples=0).read_text()
    images = re.findall(r'src="([^"]+)"', page)
    assert {"wordcloud.png", "lipsync.png", "attr_emotion.png", "attr_action.png"} <= set(images)
    for name in images:
        assert (tmp_path / "card" / name).read_bytes()[:4] == b"\x89PNG", name
    assert "12 of 13 clips with speech have a measured offset" in page
    assert "no annotations yet" not in page and "Agreement with the labels sources declare" in page


def test_the_card_renders_without_annotation_columns(engine, tmp_path: Path) -> None:
    ctx = make_context(engine, write_config(tmp_path, tmp_path / "lake"), [str(tmp_path)])
    write_table(ctx, "gold.clips", gold_rows(annotated=False), GOLD_COLUMNS)  # today's gold
    page = build_report(ctx, tmp_path / "card", n_examples=1).read_text()
    assert page.count("no annotations yet") == 5 and "wordcloud.png" not in page and "lipsync.png" not in page
    assert agreement(ctx, ctx.current("gold.clips")) is None


def test_the_card_renders_an_empty_annotated_gold(engine, tmp_path: Path) -> None:
    ctx = make_context(engine, write_config(tmp_path, tmp_path / "lake"), [str(tmp_path)])
    write_table(ctx, "gold.clips", gold_rows().head(0), {**GOLD_COLUMNS, **NEW_COLUMNS})
    gold = ctx.current("gold.clips")
    assert attribute_distributions(gold).empty and caption_words(gold).empty
    assert lipsync_histogram(gold) == {"n_speech": 0, "n_measured": 0, "width": 40.0, "centres": [], "counts": [],
                                       "significant": []}
    assert speech_shares(gold).set_index("source").loc[ALL, "clips"] == 0
    page = build_report(ctx, tmp_path / "card", n_examples=0).read_text()
    assert "0 of 0 clips with speech" in page and "wordcloud.png" not in page


# -- declared labels through ingest ------------------------------------------------------------------

def _labelled_source(shared_videos: Path, tmp_path: Path, csv: str) -> tuple[Path, Path]:
    src = tmp_path / "videos"
    (src / "talks").mkdir(parents=True)
    shutil.copy(shared_videos / "lp_d18.mp4", src / "talks" / "d18.mp4")
    shutil.copy(shared_videos / "retalking_face1.mp4", src / "face1.mp4")
    shutil.copy(shared_videos / "neg_cat.mp4", src / "cat.mp4")
    (tmp_path / "labels.csv").write_text(csv)
    cfg = write_config(tmp_path, tmp_path / "lake")
    doc = yaml.safe_load(cfg.read_text())
    doc["sources"] = [{"name": "talks", "uri": str(src), "license": "CC-BY", "labels": "labels.csv"}]
    cfg.write_text(yaml.safe_dump(doc))
    return src, cfg


def test_declared_labels_land_in_bronze_files(engine, shared_videos: Path, tmp_path: Path) -> None:
    from facevid.jobs.config import load_config
    from facevid.jobs.lake import Lake
    from facevid.jobs.runner import Context

    csv = ("path,ethnicity,appearance,lighting,action,emotion,start_s,end_s\n"
           "talks/d18.mp4,White, Male ; Short hair ;Male,,Talk;Nod,Neutral,,\n"   # whole video, ; trimmed, deduped
           "./talks//d18.mp4,,,,Smile,Happy,1.5,3\n"                              # a span of the same video
           "face1.mp4,,,Bright,,,,\n"
           "face1.mp4,,,,,Sad;Happy,,\n"                                          # two emotions: rejected
           "cat.mp4,,,,Talk,,3,1\n"                                               # end before start: rejected
           "../outside.mp4,Asian,,,,,,\n")                                        # leaves the root: rejected
    src, cfg_path = _labelled_source(shared_videos, tmp_path, csv)
    cfg = load_config(cfg_path)
    ctx = Context(cfg=cfg, engine=engine, lake=Lake(engine.spark, cfg.lake))
    run_pipeline(ctx, ["ingest"], log=lambda m: None)
    got = {r["uri"]: r for r in rows(ctx, "SELECT uri, video_id, declared_labels, error FROM bronze_files")}
    files = {Path(u).relative_to(src).as_posix(): r for u, r in got.items() if not u.startswith(str(tmp_path / "labels"))}
    assert {k: r["error"] for k, r in files.items()} == {"talks/d18.mp4": None, "face1.mp4": None, "cat.mp4": None}
    assert json.loads(files["talks/d18.mp4"]["declared_labels"]) == {
        "ethnicity": "White", "appearance": ["Male", "Short hair"], "action": ["Talk", "Nod"], "emotion": "Neutral",
        "spans": [{"start_s": 1.5, "end_s": 3.0, "action": ["Smile"], "emotion": "Happy"}]}
    assert json.loads(files["face1.mp4"]["declared_labels"]) == {"lighting": ["Bright"]}
    assert files["cat.mp4"]["declared_labels"] is None
    errors = sorted(r["error"] for u, r in got.items() if u not in {str(src / k) for k in files})
    assert len(errors) == 3
    assert errors[0].startswith(f"manifest_path: {tmp_path / 'labels.csv'} line 7: path '../outside.mp4'")
    assert errors[1].startswith(f"manifest_value: {tmp_path / 'labels.csv'} line 5: path 'face1.mp4': emotion takes one")
    assert "line 6: path 'cat.mp4': needs 0 <= start_s < end_s, got 3,1" in errors[2]

    # a labels edit re-hashes that file only (files without labels keep the fingerprint they had
    # before labels existed: measured, an ingest by the previous code is not re-run)
    (tmp_path / "labels.csv").write_text(csv.replace("face1.mp4,,,Bright,", "face1.mp4,,,Dim,"))
    assert [r.pending for r in run_pipeline(ctx, ["ingest"], log=lambda m: None)] == [1]
    assert json.loads(rows(ctx, f"SELECT declared_labels FROM bronze_files WHERE uri = '{src / 'face1.mp4'}'")[0]
                      ["declared_labels"]) == {"lighting": ["Dim"]}
    assert [r.pending for r in run_pipeline(ctx, ["ingest"], log=lambda m: None)] == [0]

    # the card grades a backend against them: a synthetic gold on the ingested video, two clips
    vid = files["talks/d18.mp4"]["video_id"]
    gold = pd.DataFrame([{**{c: None for c in GOLD_COLUMNS}, "clip_id": f"{vid}_{i}", "video_id": vid,
                          "source": "talks", "split": "train", "start_s": s, "end_s": e, "duration_s": e - s,
                          "emotion": emo, "caption_backend": "vlm"} for i, (s, e, emo) in
                         enumerate([(0.0, 1.0, "Neutral"), (1.0, 4.0, "Neutral")])])
    write_table(ctx, "gold.clips", gold, {**GOLD_COLUMNS, "emotion": "string", "caption_backend": "string"})
    summary, _ = agreement(ctx, ctx.current("gold.clips"))
    # clip 0 keeps the whole-video Neutral (right); clip 1 takes the span's Happy (wrong)
    assert summary[["attribute", "labelled", "answered", "accuracy"]].values.tolist() == [["emotion", 2, 2, 0.5]]


@pytest.mark.parametrize(("csv", "message"), [
    ("file,emotion\nx.mp4,Happy\n", "needs columns path"),
    ("path,emotions\nx.mp4,Happy\n", r"unknown column\(s\) emotions; known: action, appearance"),
    ("path,identity\nx.mp4,bob\n", "declares no attribute: add column"),
    ("path,emotion,start_s\nx.mp4,Happy,1\n", "needs both start_s and end_s or neither"),
    ("", "is not a readable CSV"),
])
def test_a_bad_labels_manifest_is_a_config_error(tmp_path: Path, csv: str, message: str) -> None:
    (tmp_path / "labels.csv").write_text(csv)
    src = Source(name="talks", uri=str(tmp_path), labels=str(tmp_path / "labels.csv"))
    with pytest.raises(ConfigError, match=f"^source talks: labels manifest {tmp_path / 'labels.csv'}:? {message}"):
        declared_labels(src, ["x.mp4"])


def test_a_bad_labels_manifest_stops_ingest_before_work(engine, shared_videos: Path, tmp_path: Path) -> None:
    from facevid.jobs.config import load_config
    from facevid.jobs.lake import Lake
    from facevid.jobs.runner import Context

    _, cfg_path = _labelled_source(shared_videos, tmp_path, "path;emotion\ncat.mp4;Happy\n")  # ; is no CSV separator
    cfg = load_config(cfg_path)
    ctx = Context(cfg=cfg, engine=engine, lake=Lake(engine.spark, cfg.lake))
    with pytest.raises(ConfigError, match="labels manifest .*labels.csv needs columns path"):
        run_pipeline(ctx, ["ingest"], log=lambda m: None)
    assert not ctx.lake.exists("bronze.files")
    (tmp_path / "labels.csv").unlink()
    with pytest.raises(ConfigError, match=r"sources\[0\].labels: manifest .*labels.csv not found"):
        load_config(cfg_path)
