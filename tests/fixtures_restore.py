"""Fixtures of the restore tests: the gold clips' crop rows of the shared pipeline run, a context on
a copy of its lake with a ``restore`` stage declared, and random-weight face restorers.

Restorers are built from spandrel's own architecture classes and saved as checkpoint files, so that tests load them through the production path (``SpandrelRestorer``:
spandrel's ``ModelLoader`` detects the architecture from the file). Nothing is downloaded.

- ``gfpgan``: ``spandrel.architectures.GFPGAN`` at its only (real) size, 86 M parameters;
- ``codeformer``: ``spandrel_extra_arches`` CodeFormer at its real size, 94 M parameters;
- ``restoreformer_tiny``: RestoreFormer with 32 channels and one block per level (0.5 M parameters),
  which spandrel detects as RestoreFormer from the tensor shapes: the always-run learned test;
- ``compact``: an SRVGGNetCompact upscaler, an architecture the stage must refuse.

The big two are saved in float16 (half the disk; spandrel loads them into float32 models).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import make_context, write_config

RESTORE_INPUT = ["silver.crops", "silver.faces", "silver.quality"]


def build(arch: str):  # noqa: ANN201  (a torch module)
    import torch

    from facevid.udfs.models.torch_compat import import_torchvision

    import_torchvision()
    torch.manual_seed(0)
    if arch == "gfpgan":
        from spandrel.architectures.GFPGAN import GFPGAN

        return GFPGAN()
    if arch == "codeformer":
        from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

        return CodeFormer()
    if arch == "restoreformer_tiny":
        from spandrel.architectures.RestoreFormer import RestoreFormer

        return RestoreFormer(ch=32, ch_mult=(1, 1, 1, 1, 1, 1), num_res_blocks=1, n_embed=64, embed_dim=32,
                             z_channels=32)
    if arch == "compact":
        from spandrel.architectures.Compact import Compact

        return Compact(num_feat=16, num_conv=2, upscale=2)
    raise ValueError(arch)


def save(model, path: Path, half: bool = False) -> Path:  # noqa: ANN001
    import torch

    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def restorer_weights(tmp_path_factory) -> Callable[[str], Path]:
    """``get(arch) -> Path``: the arch's random-weight checkpoint, built once per session."""
    folder = tmp_path_factory.mktemp("restorers")
    made: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in made:
            made[arch] = save(build(arch), folder / f"{arch}.pth", half=arch in ("gfpgan", "codeformer"))
        return made[arch]

    return get


@pytest.fixture(scope="session")
def gold_crops(full_run) -> list[dict[str, Any]]:
    """The gold clips of the shared run as the restore stage reads them: a silver.crops row with
    its silver.faces track and silver.quality's sharpness_face, fewest frames first."""
    from deltalake import DeltaTable

    ctx, _ = full_run
    read = lambda t: DeltaTable(ctx.lake.location(t)).to_pandas()  # noqa: E731
    gold = set(read("gold.clips")["clip_id"])
    crops, faces, quality = read("silver.crops"), read("silver.faces"), read("silver.quality")
    faces = faces[["clip_id", "track_t", "track_boxes", "track_scores"]]
    joined = crops.merge(faces, on="clip_id").merge(quality[["clip_id", "sharpness_face"]], on="clip_id")
    out = [r for r in joined.to_dict("records") if r["clip_id"] in gold]
    assert len(out) >= 5, "the shared run should publish several gold clips"
    return sorted(out, key=lambda r: (r["n_frames"], r["clip_id"]))


def restore_config(tmp: Path, lake: Path, params: dict, resources: dict | None = None) -> Path:
    """The repo's pipeline.yml with ``stages.restore`` (``restore.faces``) declared with ``params``."""
    path = write_config(tmp, lake)
    doc = yaml.safe_load(path.read_text())
    doc["stages"]["restore"] = {"udf": "restore.faces", "input": RESTORE_INPUT, "output": "silver.restored",
                                "version": 1, "resources": {"batch": 2, **(resources or {})}, "params": params}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def restore_context(full_run, tmp: Path, params: dict, resources: dict | None = None):
    """A context on a private copy of the shared run's lake with ``stages.restore`` declared."""
    ctx, _ = full_run
    shutil.copytree(ctx.cfg.lake, tmp / "lake")
    return make_context(ctx.engine, restore_config(tmp, tmp / "lake", params, resources),
                        [s.uri for s in ctx.cfg.sources])
