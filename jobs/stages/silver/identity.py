"""``identity.embed`` -> ``silver.embeddings`` (per clip) and ``identity.cluster`` ->
``silver.identities`` (whole table: stable identities and near-duplicate re-uploads)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from facevid.jobs.config import ConfigError, StageSpec
from facevid.jobs.stages.base import ClipTrackOp, TableOp, register
from facevid.udfs.base import RowFn
from facevid.udfs.curation.clustering import IDENTITY_COLUMNS, ClusterParams
from facevid.udfs.curation.identities import build_identities
from facevid.udfs.face.embed import EMBED_COLUMNS, EmbedParams, embed_clip

if TYPE_CHECKING:
    from facevid.jobs.runner import Context


@register
class EmbedFaces(ClipTrackOp):
    """The mean dlib 128-d descriptor of the main face track over ``frames`` detected samples, its
    spread, and dHashes of ``frames`` whole frames. The clip is decoded once; models load once per
    worker thread. Clips without a face track are ``no_face`` error rows."""

    name = "identity.embed"
    default_output = "silver.embeddings"
    columns = EMBED_COLUMNS
    params_cls = EmbedParams
    clip_fn = staticmethod(embed_clip)

    def preflight(self, spec: StageSpec) -> None:
        """The dlib weights exist before the run starts (``facevid run`` calls this before the engine)."""
        missing = spec.params.missing_weights()
        if missing:
            keys = " and ".join(f"stages.{spec.name}.params.{m}" for m in missing)
            raise ConfigError(f"stage {spec.name}: no dlib weights: set {keys} to dlib's .dat files (on "
                              f"Databricks: the bundle's dlib_weights folder, passed with --set), or install "
                              f"face-recognition-models (the `local` extra)")

    def row_fn(self, spec: StageSpec) -> RowFn:
        self.preflight(spec)  # also for callers of the runner that skip the CLI
        return super().row_fn(spec)


@register
class ClusterIdentities(TableOp):
    """One identity per clip: kept from the previous output, declared by the source, or the nearest
    centroid / a new agglomerative cluster of the embeddings; plus ``duplicate_of`` for footage
    re-uploaded as another video (see ``facevid.udfs.curation.clustering``).

    On the driver: the clips' 128-d mean descriptors and 5 frame hashes (about 1.1 KB a clip, so
    ~300 MB at the paper's 270k clips) and the previous identities, because agglomerative
    clustering and the duplicate search compare clips with each other; the face tracks and every
    other column stay in the lake."""

    name = "identity.cluster"
    default_input = ["silver.embeddings", "bronze.files"]
    default_output = "silver.identities"
    key = "clip_id"
    columns = IDENTITY_COLUMNS
    params_cls = ClusterParams

    def build(self, ctx: Context, spec: StageSpec, previous: pd.DataFrame | None) -> pd.DataFrame:
        if len(spec.inputs) < 2:
            raise ValueError(f"stage {spec.name}: input must list the embeddings table and the files table")
        emb = (ctx.current(spec.inputs[0]).filter("error IS NULL")
               .select("clip_id", "video_id", "embedding", "frame_hashes").toPandas())  # bounded: ~1.1 KB a clip (docstring)
        files = ctx.current(spec.inputs[1])
        wanted = [c for c in ("uri", "source", "video_id", "identity") if c in files.columns]
        files = files.filter("error IS NULL").select(*wanted).toPandas()  # bounded: uri, source, video_id, identity per file
        return build_identities(emb, files, previous, spec.params)
