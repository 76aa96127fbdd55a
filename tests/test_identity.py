"""identity.embed / identity.cluster: dHash, clustering and near-duplicate rules on synthetic data;
then the real pipeline in two rounds (a subset, then more clips, a re-encoded copy and a source
that declares an identity): the same person merges, different people stay apart, earlier clips
keep their ids, declared identities win, re-uploads are flagged and inherit the identity."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, make_context

import facevid.jobs.stages.silver.identity  # noqa: F401  (registers identity.embed and identity.cluster)
from facevid.jobs.runner import op_for, run_pipeline
from facevid.udfs.base import StageError
from facevid.udfs.curation.clustering import (
    ClusterParams,
    assign_identities,
    cluster_id,
    declared_id,
    near_duplicates,
)
from facevid.udfs.curation.identities import build_identities
from facevid.udfs.face.embed import EmbedParams, dhash, embed_clip, spread_indices
from facevid.udfs.face.faces import FacesParams, detect_clip
from facevid.udfs.media.video import iter_frames

# ---- pure functions ------------------------------------------------------------------------------


def test_dhash_is_signed_64_bit_and_robust_to_small_changes() -> None:
    ramp = np.tile(np.arange(255, 0, -3, dtype=np.uint8), (60, 1))  # darker to the right: every bit set
    assert dhash(ramp) == -1
    assert dhash(np.full((40, 40), 128, np.uint8)) == 0  # flat: no structure, never matched
    rng = np.random.default_rng(0)
    img = cv2_blur(rng.integers(0, 256, (90, 160), np.uint8))
    noisy = np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
    assert bin((dhash(img) ^ dhash(noisy)) & (2**64 - 1)).count("1") <= 4
    assert -(2**63) <= dhash(img) < 2**63


def cv2_blur(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), 8)


def test_ids_and_spread() -> None:
    assert spread_indices(10, 5).tolist() == [0, 2, 4, 7, 9] and spread_indices(3, 5).tolist() == [0, 1, 2]
    assert spread_indices(0, 5).tolist() == []
    assert declared_id("celeb", "id00017") == "src_celeb_id00017"
    odd = declared_id("my src", "Jane Doe/2")
    assert odd.startswith("src_my_src_Jane_Doe_2_") and odd != declared_id("my src", "Jane_Doe_2")
    first = cluster_id("abc_0000", set())
    assert first.startswith("id_") and len(first) == 15 and cluster_id("abc_0000", {first}) != first


def blobs(n_people: int, per: int, seed: int = 0, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """``per`` unit-ish 128-d points around each of ``n_people`` centres ~1.0 apart (dlib-like scale)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1 / np.sqrt(2 * 128), (n_people, 128)) * 1.0
    labels = np.repeat(np.arange(n_people), per)
    return centres[labels] + rng.normal(0, noise, (len(labels), 128)), labels


def test_clustering_recovers_people_deterministically() -> None:
    x, labels = blobs(6, 4)
    clips = [f"c{i:03d}" for i in range(len(x))]
    ids = assign_identities(clips, x, [None] * len(x), ClusterParams(threshold=0.5))
    assert len(set(ids)) == 6 and all(len({ids[i] for i in np.flatnonzero(labels == p)}) == 1 for p in range(6))
    assert ids[0] == cluster_id("c000", set())  # named after the smallest clip id of the cluster
    shuffled = np.random.default_rng(1).permutation(len(x))
    again = assign_identities([clips[i] for i in shuffled], x[shuffled], [None] * len(x), ClusterParams(threshold=0.5))
    assert dict(zip([clips[i] for i in shuffled], again, strict=True)) == dict(zip(clips, ids, strict=True))
    small = assign_identities(clips, x, [None] * len(x), ClusterParams(threshold=0.5, batch=5))
    assert len(set(small)) == 6  # batches: later batches join earlier centroids


def test_fixed_ids_stay_and_new_clips_join_the_nearest_centroid() -> None:
    x, labels = blobs(3, 3)
    clips = [f"c{i}" for i in range(9)]
    fixed = ["keep_a", "keep_a", None, "keep_b", None, None, None, None, None]  # c0, c1 person 0; c3 person 1
    ids = assign_identities(clips, x, fixed, ClusterParams(threshold=0.5), taken={"keep_a", "keep_b"})
    assert ids[:3] == ["keep_a"] * 3 and ids[3:6] == ["keep_b"] * 3
    assert len(set(ids[6:])) == 1 and ids[6] == cluster_id("c6", set())
    forced = assign_identities(clips, x, ["odd"] + [None] * 8, ClusterParams(threshold=0.5))
    assert forced[0] == "odd" and forced[1] == forced[2] == "odd"  # a fixed clip is never moved


@pytest.mark.parametrize("bits", [2, 6, 9])
def test_near_duplicates_match_brute_force(bits: int) -> None:
    rng = np.random.default_rng(3)
    base = rng.integers(-(2**63), 2**63 - 1, (40, 5), dtype=np.int64)
    hashes = [base[i % 40].copy() for i in range(60)]  # clips 40..59 copy clips 0..19 with bit flips
    for i in range(40, 60):
        for f in range(5):
            for b in rng.choice(64, size=rng.integers(0, 9), replace=False):
                hashes[i][f] ^= np.int64(1) << np.int64(b) if b < 63 else np.int64(-(2**63))
    videos = [f"v{i}" for i in range(60)]
    videos[41] = videos[1]  # the same video is never its own duplicate
    hashes.append(np.zeros(5, np.int64))  # flat frames never match
    hashes.append(np.zeros(5, np.int64))
    videos += ["flat1", "flat2"]
    params = ClusterParams(dup_hamming=bits, dup_min_frames=3)
    rank = np.arange(len(hashes))
    dup, ham = near_duplicates(videos, hashes, rank, np.ones(len(hashes), bool), params)
    for i, h in enumerate(hashes):
        want, best = None, None
        for j in range(i):
            d = np.bitwise_count(np.asarray(h).view(np.uint64)[:, None] ^ np.asarray(hashes[j]).view(np.uint64)[None])
            m = (d <= bits) & (np.asarray(h)[:, None] != 0) & (np.asarray(hashes[j])[None] != 0)
            if videos[i] != videos[j] and m.any(1).sum() >= 3 and m.any(0).sum() >= 3:
                want, best = j, int(d[m].min())
                break
        assert (dup[i], ham[i]) == (want, best), i
    assert sum(d is not None for d in dup) >= {2: 1, 6: 10, 9: 15}[bits] and dup[41] is None
    only = near_duplicates(videos, hashes, rank, np.arange(len(hashes)) == 45, params)[0]
    assert [i for i, d in enumerate(only) if d is not None] == ([45] if dup[45] is not None else [])


RANDOM_HASHES = np.random.default_rng(5).integers(-(2**63), 2**63 - 1, (20, 2), dtype=np.int64)


def frame_table(x: np.ndarray, hashes: list | None = None) -> pd.DataFrame:
    """Embeddings rows; every clip its own video and random (unrelated) frame hashes by default."""
    n = len(x)
    return pd.DataFrame({"clip_id": [f"c{i:02d}" for i in range(n)], "video_id": [f"v{i}" for i in range(n)],
                         "embedding": list(x), "frame_hashes": hashes or list(RANDOM_HASHES[:n])})


def test_build_keeps_previous_rows_declares_and_inherits_duplicates() -> None:
    x, _ = blobs(4, 2, noise=0.01)
    params = ClusterParams(threshold=0.5, dup_min_frames=2)
    first = build_identities(frame_table(x[:4]), None, None, params)
    assert first["identity_origin"].eq("cluster").all() and first["identity_id"].nunique() == 2
    # the earlier rows are pinned to custom ids: a rebuild keeps them whatever clustering would say
    first.loc[first.clip_id == "c01", "identity_id"] = "id_pinned"
    far = x[6] + 5  # a new clip far from everyone, re-uploading c00's footage (same hashes, other video)
    hashes = list(RANDOM_HASHES[:8]) + [RANDOM_HASHES[0]]
    files = pd.DataFrame({"uri": ["a", "b"], "source": ["celeb", "celeb"], "video_id": ["v6", "v7"],
                          "identity": ["jane", None]})
    second = build_identities(frame_table(np.vstack([x, far]), hashes), files, first, params).set_index("clip_id")
    assert second.loc["c01", "identity_id"] == "id_pinned"
    assert (second.loc[["c00", "c02", "c03"], "identity_id"] == first.set_index("clip_id").loc[
        ["c00", "c02", "c03"], "identity_id"]).all()
    assert second.loc["c06", ["identity_id", "identity_origin"]].tolist() == ["src_celeb_jane", "declared"]
    assert pd.isna(second.loc["c06", "identity_distance"]) and second.loc["c07", "identity_id"] == "src_celeb_jane"
    assert second.loc["c08", ["duplicate_of", "identity_origin"]].tolist() == ["c00", "duplicate"]
    assert second.loc["c08", "identity_id"] == second.loc["c00", "identity_id"]
    assert second.loc["c08", "duplicate_distance"] == 0 and second.loc["c00", "duplicate_of"] is None
    assert (second["identity_clips"] == second.groupby("identity_id")["video_id"].transform("size")).all()
    assert build_identities(frame_table(x[:0]), None, None, params).empty


def test_params_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="embed.frames"):
        EmbedParams(frames=0)
    with pytest.raises(ValueError, match="embed.model_path .* does not exist"):
        EmbedParams(model_path=str(tmp_path / "nope.dat"))
    with pytest.raises(ValueError, match="landmarks_path"):
        EmbedParams(landmarks_path="s3://bucket/sp.dat")
    for bad in ({"linkage": "ward"}, {"threshold": 0}, {"dup_min_frames": 0}, {"dup_hamming": 40}):
        with pytest.raises(ValueError, match="identities"):
            ClusterParams(**bad)
    with pytest.raises(StageError, match="no_face"):
        embed_clip("unused.mp4", {"track_t": [0.0, 0.5], "track_boxes": [], "track_scores": []}, EmbedParams())


def test_embed_a_clip_from_the_middle_of_a_video(shared_videos: Path) -> None:
    uri = str(shared_videos / "lp_d18.mp4")
    face = detect_clip(uri, 2.0, 5.5, FacesParams())
    row = embed_clip(uri, {**face, "start_s": 2.0, "end_s": 5.5}, EmbedParams())
    assert row["embed_frames"] == 5 and len(row["embedding"]) == 128 and row["embed_spread"] < 0.3
    assert len(row["frame_hashes"]) == 5 and all(2.0 <= t < 5.5 for t in face["track_t"])
    t0, gray = next(iter_frames(uri, 2.0, 5.5, max_side=64, gray=True))  # the same first frame, hashed alike
    assert abs(t0 - face["track_t"][0]) < 1e-6 and row["frame_hashes"][0] == dhash(gray)
    whole = embed_clip(uri, {**detect_clip(uri, 0.0, None, FacesParams()), "start_s": 0.0}, EmbedParams())
    assert np.linalg.norm(np.subtract(row["embedding"], whole["embedding"])) < 0.2  # same person, same footage


# ---- the real pipeline, in two rounds ------------------------------------------------------------

ROUND1 = ["retalking_face3_aoc", "lp_d20", "lp_d11", "retalking_face1", "lp_d18", "carphone_pristine", "neg_cat"]
ROUND2 = ["sadtalker_aoc", "lp_d19", "retalking_face2", "retalking_face4", "lp_s32", "lp_s13", "carphone_distorted"]
STAGES = ["ingest", "probe", "split", "faces", "embed"]


def reencode(src: Path, dst: Path, scale: float = 0.75, crf: int = 32) -> Path:
    """The same footage as another file: smaller and at a lower quality (a new sha256, a new video_id)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        w, h = int(vin.width * scale) // 2 * 2, int(vin.height * scale) // 2 * 2
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
        vout.codec_context.time_base = 1 / vin.average_rate
        vout.options = {"crf": str(crf), "preset": "ultrafast"}
        for i, frame in enumerate(inp.decode(vin)):
            small = frame.reformat(width=w, height=h, format="yuv420p")
            small.pts, small.time_base = i, vout.codec_context.time_base
            out.mux(vout.encode(small))
        out.mux(vout.encode())
    return dst


def config(tmp: Path, sources: list[dict]) -> Path:
    """The repo's ingest..faces stages plus the identity stages, on ``sources``."""
    doc = yaml.safe_load((REPO / "pipeline.yml").read_text())
    doc["lake"], doc["sources"] = str(tmp / "lake"), sources
    doc["stages"] = {k: doc["stages"][k] for k in STAGES[:-1]}
    doc["stages"]["embed"] = {"udf": "identity.embed", "input": ["silver.faces", "silver.clips"],
                              "output": "silver.embeddings", "resources": {"batch": 16}, "params": {"frames": 5}}
    doc["stages"]["identities"] = {"udf": "identity.cluster", "input": ["silver.embeddings", "bronze.files"],
                                   "output": "silver.identities", "params": {"threshold": 0.35}}
    path = tmp / f"pipeline{len(sources)}.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def rounds(engine, shared_videos: Path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("identity")
    main, celeb = tmp / "main", tmp / "celeb" / "jane"
    main.mkdir()
    celeb.mkdir(parents=True)

    def run(sources: list[dict], previous: pd.DataFrame | None):
        ctx = make_context(engine, config(tmp, sources), [])
        run_pipeline(ctx, STAGES, log=lambda m: None)
        spec = ctx.cfg.stages["identities"]
        return ctx, op_for(spec).build(ctx, spec, previous)

    for name in ROUND1:
        shutil.copy(shared_videos / f"{name}.mp4", main)
    first_sources = [{"name": "main", "uri": str(main)}]
    _, first = run(first_sources, None)
    for name in ROUND2:
        shutil.copy(shared_videos / f"{name}.mp4", main)
    reencode(shared_videos / "lp_d18.mp4", main / "lp_d18_small.mp4")
    shutil.copy(shared_videos / "retalking_face5.mp4", celeb)
    ctx, second = run(first_sources + [{"name": "celeb", "uri": str(tmp / "celeb"), "identity": "folder"}], first)
    names = ctx.lake.read("silver.clips").select("clip_id", "video_uri").toPandas()
    stem = {c: Path(u).stem for c, u in zip(names.clip_id, names.video_uri, strict=True)}
    return ctx, first.assign(file=first.clip_id.map(stem)), second.assign(file=second.clip_id.map(stem))


def by_file(table: pd.DataFrame) -> pd.DataFrame:
    return table[table.clip_id.str.contains("_000000000_")].set_index("file")  # first clip of each video


@pytest.mark.spark
@pytest.mark.e2e
def test_embeddings_table(rounds) -> None:
    ctx, _, _ = rounds
    emb = ctx.current("silver.embeddings").toPandas()
    good = emb[emb.error.isna()]
    assert len(good) == 15 and good.embedding.map(len).eq(128).all()
    assert good.embed_frames.between(4, 5).all()  # 5, or every detected sample (carphone_distorted: 4)
    assert good.frame_hashes.map(len).between(1, 5).all() and good.embed_spread.between(0.05, 0.45).all()
    assert emb[emb.error.notna()].error.str.startswith("no_face:").all()  # neg_cat
    assert (good.embed_ms > 0).all()


@pytest.mark.spark
@pytest.mark.e2e
def test_same_person_merges_and_different_people_stay_apart(rounds) -> None:
    _, _, second = rounds
    ident = by_file(second)["identity_id"]
    assert ident["retalking_face3_aoc"] == ident["sadtalker_aoc"]
    singles = [n for n in ROUND1 + ROUND2 if n not in ("neg_cat", "sadtalker_aoc", "carphone_distorted")]
    assert ident[singles].nunique() == len(singles), ident[singles]
    assert ident["retalking_face5"] not in set(ident[singles])
    for a, b in [("lp_d20", "lp_d11"), ("lp_d20", "retalking_face1"), ("lp_d11", "retalking_face1")]:
        assert ident[a] != ident[b]


@pytest.mark.spark
@pytest.mark.e2e
def test_earlier_clips_keep_their_ids_and_ids_are_deterministic(rounds) -> None:
    ctx, first, second = rounds
    before = first.set_index("clip_id")["identity_id"]
    after = second.set_index("clip_id").loc[before.index, "identity_id"]
    assert after.equals(before)
    assert first.identity_origin.eq("cluster").all()
    spec = ctx.cfg.stages["identities"]
    a, b = (op_for(spec).build(ctx, spec, None) for _ in range(2))
    assert a.equals(b) and a.identity_id.str.startswith(("id_", "src_")).all()


@pytest.mark.spark
@pytest.mark.e2e
def test_declared_identity_wins(rounds) -> None:
    _, _, second = rounds
    row = by_file(second).loc["retalking_face5"]
    assert (row.identity_id, row.identity_origin) == ("src_celeb_jane", "declared")
    assert pd.isna(row.identity_distance)


@pytest.mark.spark
@pytest.mark.e2e
def test_reuploaded_footage_is_a_duplicate_of_the_earlier_clip(rounds) -> None:
    _, _, second = rounds
    t = by_file(second)
    small = t.loc["lp_d18_small"]
    assert small.duplicate_of == t.loc["lp_d18", "clip_id"] and small.duplicate_distance <= 2
    assert small.identity_id == t.loc["lp_d18", "identity_id"]
    # the heavily compressed copy of a 45-pixel face: embeddings 0.58 apart, the footage still matches
    worse = t.loc["carphone_distorted"]
    assert worse.duplicate_of == t.loc["carphone_pristine", "clip_id"] and worse.identity_origin == "duplicate"
    assert worse.identity_id == t.loc["carphone_pristine", "identity_id"]
    others = t.drop(["lp_d18_small", "carphone_distorted"])
    assert others.duplicate_of.isna().all(), others[others.duplicate_of.notna()]
