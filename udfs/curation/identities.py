"""``silver.identities`` as one pure pandas function over the embeddings, files and previous output.

Order of decisions for each clip (earlier decisions are never revisited, see the stability rule
in ``facevid.udfs.curation.clustering``): a clip in the previous output keeps its row; a new clip whose
source declares an identity takes it (``declared``); a new clip that is a near-duplicate of an
earlier clip (the same footage re-uploaded) takes that clip's identity (``duplicate``: the same
footage is the same person even where the embedding is unreliable, e.g. tiny or degraded faces);
the others are assigned to a centroid or clustered (``cluster``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from facevid.udfs.curation.clustering import (
    IDENTITY_COLUMNS,
    ClusterParams,
    assign_identities,
    centroid_distances,
    declared_id,
    near_duplicates,
)


def declared_by_video(files: pd.DataFrame | None) -> dict[str, str]:
    """``video_id -> src_<source>_<identity>`` from ``bronze.files`` rows whose source declares an
    identity (the first such file by ``uri`` when copies disagree); {} without an identity column."""
    if files is None or not len(files) or "identity" not in files.columns:
        return {}
    f = files[files["identity"].notna() & files["video_id"].notna()]
    f = f[f["identity"].astype(str).str.strip() != ""].sort_values("uri").drop_duplicates("video_id")
    return {str(v): declared_id(str(s), str(i).strip())
            for v, s, i in zip(f["video_id"], f["source"], f["identity"], strict=True)}


def _present(value: Any) -> bool:
    return value is not None and value is not pd.NA and not (isinstance(value, float) and np.isnan(value))


def build_identities(emb: pd.DataFrame, files: pd.DataFrame | None, previous: pd.DataFrame | None,
                     params: ClusterParams) -> pd.DataFrame:
    """The ``silver.identities`` table (``IDENTITY_COLUMNS``) from the good ``silver.embeddings`` rows
    (``clip_id``, ``video_id``, ``embedding``, ``frame_hashes``), ``bronze.files`` (``uri``, ``source``,
    ``video_id``, optional ``identity``) and the previous output (None on the first run)."""
    emb = emb.sort_values("clip_id", ignore_index=True)
    if not len(emb):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in IDENTITY_COLUMNS})
    clips = emb["clip_id"].astype(str).tolist()
    videos = emb["video_id"].astype(str).tolist()
    vecs = np.stack([np.asarray(v, np.float64).reshape(-1) for v in emb["embedding"]])
    prev = pd.DataFrame(columns=list(IDENTITY_COLUMNS)) if previous is None else previous
    prev = prev[prev["identity_id"].notna()].drop_duplicates("clip_id").set_index("clip_id")
    old = np.array([c in prev.index for c in clips])

    def before(col: str) -> list[Any]:
        return [prev.at[c, col] if o else None for c, o in zip(clips, old, strict=True)]

    # near-duplicates first: earlier rows keep their answer unless the clip they point at is gone
    kept_dup = before("duplicate_of")
    query = ~old | np.array([_present(k) and k not in set(clips) for k in kept_dup])
    order = np.lexsort((np.arange(len(clips)), ~old))  # previous clips first, then clip_id order
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    dup, ham = near_duplicates(videos, list(emb["frame_hashes"]), rank, query, params)

    declared = declared_by_video(files)
    origin = [o if is_old else "declared" if v in declared else "duplicate" if d is not None else "cluster"
              for o, is_old, v, d in zip(before("identity_origin"), old, videos, dup, strict=True)]
    fixed = [i if is_old else declared.get(v) for i, is_old, v in zip(before("identity_id"), old, videos, strict=True)]
    inherit = np.array([o == "duplicate" and not is_old for o, is_old in zip(origin, old, strict=True)])
    rest = np.flatnonzero(~inherit)
    ids: list[str] = [""] * len(clips)
    for i, ident in zip(rest, assign_identities([clips[i] for i in rest], vecs[rest], [fixed[i] for i in rest],
                                                params, taken=set(prev["identity_id"])), strict=True):
        ids[i] = ident
    for i in order:  # a duplicate's original comes earlier in this order, so it already has an id
        if inherit[i]:
            ids[i] = ids[dup[i]]

    out = pd.DataFrame({"clip_id": clips, "video_id": videos, "identity_id": ids, "identity_origin": origin})
    out["identity_distance"] = np.where(out["identity_origin"] == "declared", np.nan, centroid_distances(ids, vecs))
    out["identity_clips"] = out.groupby("identity_id")["clip_id"].transform("size")
    out["duplicate_of"] = [clips[d] if q and d is not None else (k if not q and _present(k) else None)
                           for q, d, k in zip(query, dup, kept_dup, strict=True)]
    dist = [h if q else k for q, h, k in zip(query, ham, before("duplicate_distance"), strict=True)]
    out["duplicate_distance"] = pd.array([int(v) if _present(v) else None for v in dist], dtype="Int64")
    return out[list(IDENTITY_COLUMNS)]
