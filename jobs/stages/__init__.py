"""Stage ops, registered by name for ``pipeline.yml`` (``udf: faces.detect``)."""

from jobs.stages import crops, faces, gold, identity, ingest, probe, quality, split  # noqa: F401  (registration side effects)
from jobs.stages.base import Op, registry

__all__ = ["Op", "registry"]
