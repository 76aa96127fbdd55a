"""Stage ops by layer, registered by name for ``pipeline.yml`` (``udf: faces.detect``):
bronze (ingest, probe) -> silver (split, faces, quality, crops, restore, identity, av, caption) -> gold (select,
review tasks)."""

from facevid.jobs.stages.base import Op, registry
from facevid.jobs.stages.bronze import ingest, probe  # noqa: F401  (registration side effects)
from facevid.jobs.stages.gold import review, select  # noqa: F401
from facevid.jobs.stages.silver import av, caption, crops, faces, identity, quality, restore, split  # noqa: F401

__all__ = ["Op", "registry"]
