"""The ``vlm`` captioning backend on tiny random-weight models of each family, and the frame sampler.

Every model test goes through the production path: ``VlmCaptioner.load`` reads a model folder
(built offline by ``tiny_vlm``, once per session) with ``AutoProcessor`` and
``AutoModelForImageTextToText``, and ``generate`` runs the real chat template, processor and
batched ``generate``. The frames come from ``sample_frames`` on three shared videos. They are not
face crops (the crops stage writes those), but the sampler works on any mp4, and
``sadtalker_aoc`` (a 512 px HDTF face crop), ``lp_d18`` (frontal, plain background) and
``retalking_face5`` (glasses) are the closest to crops; their clips differ in length and content.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from synth_video import make_test_video
from tiny_vlm import FAMILIES, GENERIC_FAMILY, canned_answer_fn, real_size_captioner

from facevid.udfs.annotate.frames import frame_plan, sample_frames
from facevid.udfs.annotate.vlm import PARAM, VlmCaptioner, VlmSettings, model_key, resolve_model_path
from facevid.udfs.base import StageError
from facevid.udfs.media.video import iter_frames
from facevid.udfs.models.runtime import cuda_available, shared_model, weights_hash

CLIPS = ("sadtalker_aoc.mp4", "lp_d18.mp4", "retalking_face5.mp4")
SIDE = 224
ANSWER = ('{"ethnicity": "Asian", "appearance": ["Eyeglasses", "Smile"], "lighting": ["Soft"], '
          '"action": ["Talk", "Nod"], "emotion": "Happy", "caption": "A young woman talks and nods."}')


@pytest.fixture(scope="module")
def clips(shared_videos: Path) -> list[tuple[list[np.ndarray], str, list[float]]]:
    """Three (frames, prompt, times) items; the prompts differ in length so the batch needs padding."""
    items = []
    for i, name in enumerate(CLIPS):
        frames, times = sample_frames(str(shared_videos / name), n_random=3, seed=7, side=SIDE)
        items.append((frames, "Describe the person as JSON." + " Be brief." * (2 * i), times))
    return items


def load(tiny_vlms, family: str, **over) -> VlmCaptioner:
    settings = VlmSettings(**{"model_path": str(tiny_vlms(family)), "max_new_tokens": 8, "frame_side": SIDE,
                              "max_pixels": SIDE * SIDE, **over})
    captioner, _ = shared_model(model_key(settings), lambda: VlmCaptioner.load(settings))
    return captioner


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_generate_is_left_padded_and_equals_single_rows(tiny_vlms, clips, family: str) -> None:
    import torch

    captioner = load(tiny_vlms, family)
    assert captioner.family == family and captioner.frames_as == "video" and not captioner.model.training
    inputs = captioner.prepare(clips)
    mask, ids = inputs["attention_mask"], inputs["input_ids"]
    lengths = mask.sum(1).tolist()
    assert len(set(lengths)) == 3, lengths  # three prompt lengths: two rows are padded
    pad = captioner.processor.tokenizer.pad_token_id
    short = int(np.argmin(lengths))
    gap = ids.shape[1] - lengths[short]
    assert (ids[short, :gap] == pad).all() and (mask[short, :gap] == 0).all() and mask[:, -1].all()
    with torch.inference_mode():  # the padded rows' next-token logits are those of the rows alone
        batch_logits = captioner.model(**inputs).logits[:, -1]
        for row, item in enumerate(clips):
            alone = captioner.model(**captioner.prepare([item])).logits[0, -1]
            assert torch.allclose(batch_logits[row], alone, atol=1e-4), (family, row)
    batched = captioner.generate(clips)
    assert batched == [captioner.generate([item])[0] for item in clips]
    assert len(set(batched)) > 1, batched  # the answers depend on the clip (random weights: garbage text)


@pytest.mark.parametrize("family", FAMILIES)
def test_forced_answer_comes_back_verbatim_through_generate(tiny_vlms, clips, family: str) -> None:
    captioner = load(tiny_vlms, family)
    answers = captioner.generate(clips, canned_answer_fn(captioner.processor, ANSWER), max_new_tokens=200)
    assert answers == [ANSWER] * len(clips)
    assert captioner.generate(clips[:1], canned_answer_fn(captioner.processor, ANSWER), max_new_tokens=200) == [ANSWER]


@pytest.mark.parametrize("family", [GENERIC_FAMILY, "qwen2_5_vl", "llava_onevision"])
def test_frames_as_images_and_the_generic_path(tiny_vlms, clips, family: str) -> None:
    """Qwen2-VL has no path of its own: the generic one shows the frames as images through the
    processor's chat template; the known families can be told to do the same."""
    captioner = load(tiny_vlms, family, frames_as="auto" if family == GENERIC_FAMILY else "images")
    assert captioner.frames_as == "images" and (captioner.family == "generic") == (family == GENERIC_FAMILY)
    inputs = captioner.prepare(clips)
    assert "pixel_values" in inputs and "pixel_values_videos" not in inputs
    assert not inputs["attention_mask"][:, 0].all() and inputs["attention_mask"][:, -1].all()  # left-padded
    batched = captioner.generate(clips)
    assert batched == [captioner.generate([item])[0] for item in clips]
    answers = captioner.generate(clips, canned_answer_fn(captioner.processor, ANSWER), max_new_tokens=200)
    assert answers == [ANSWER] * len(clips)


def test_llava_onevision_batches_group_equal_frame_counts(tiny_vlms, clips) -> None:
    captioner = load(tiny_vlms, "llava_onevision")
    mixed = [clips[0], (clips[1][0][:3], clips[1][1], clips[1][2][:3]), clips[2], (clips[0][0][:1], "Short.", [0.0])]
    batched = captioner.generate(mixed)
    assert batched == [captioner.generate([item])[0] for item in mixed]


def test_video_metadata_and_pixel_budgets_reach_the_processors(tiny_vlms, clips) -> None:
    qwen3 = load(tiny_vlms, "qwen3_vl")
    text = qwen3.processor.tokenizer.decode(qwen3.prepare(clips[:1])["input_ids"][0])
    times = clips[0][2]  # Qwen3-VL stamps each pair of frames with its mean time, the real clock
    stamps = [f"<{(times[i] + times[i + 1]) / 2:.1f} seconds>" for i in (0, 2)]
    assert all(s in text for s in stamps), (stamps, text[:300])
    qwen25 = load(tiny_vlms, "qwen2_5_vl")
    grid = qwen25.prepare(clips[:1])["video_grid_thw"][0].tolist()
    assert grid == [2, SIDE // 14, SIDE // 14]  # 4 frames at 224 px: no upscale to the 100,352 px floor
    small = load(tiny_vlms, "qwen2_5_vl", max_new_tokens=9)  # another key: another captioner
    assert small is not qwen25 and small.settings.max_new_tokens == 9


def test_captioner_names_its_model_and_hashes_its_folder(tiny_vlms) -> None:
    captioner = load(tiny_vlms, "llava_onevision")
    assert captioner.name == "llava_onevision (llava_onevision)"
    assert len(captioner.weights_hash) == 16 and captioner.weights_hash == weights_hash(str(captioner.folder))


def test_weights_hash_of_a_folder_ignores_hidden_files_and_sees_paths(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "sub").mkdir()
    (tmp_path / "m" / "sub" / "w.bin").write_bytes(b"1")
    before = weights_hash(str(tmp_path / "m"))
    (tmp_path / "m" / ".cache").mkdir()
    (tmp_path / "m" / ".cache" / "download.lock").write_text("a hub download's bookkeeping")
    assert weights_hash(str(tmp_path / "m")) == before
    (tmp_path / "m" / "sub" / "w.bin").rename(tmp_path / "m" / "w.bin")  # same name, other place
    assert weights_hash(str(tmp_path / "m")) != before


def test_model_path_errors_name_the_parameter(tmp_path: Path) -> None:
    for uri, why in ((None, "not set"), (str(tmp_path / "nope"), "does not exist"),
                     (str(tmp_path), "has no config.json")):
        with pytest.raises(FileNotFoundError, match=why) as err:
            VlmCaptioner.load(VlmSettings(model_path=uri))
        assert PARAM in str(err.value)
    (tmp_path / "pllava").mkdir()  # a model type transformers does not know: convert it first
    (tmp_path / "pllava" / "config.json").write_text('{"model_type": "pllava"}')
    with pytest.raises(ValueError, match=f"{PARAM}: .*config.json is not a model transformers"):
        VlmCaptioner.load(VlmSettings(model_path=str(tmp_path / "pllava")))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        resolve_model_path(str(tmp_path / "weights.bin"))
    with pytest.raises(ValueError, match="caption.dtype"):
        VlmSettings(model_path=str(tmp_path), dtype="int8")
    with pytest.raises(ValueError, match="caption.attn_implementation"):
        VlmSettings(attn_implementation="flash")


@pytest.mark.s3
def test_model_folder_from_s3_is_downloaded_once_and_loads(s3_server, tiny_vlms, tmp_path: Path) -> None:
    folder = tiny_vlms("qwen2_5_vl")
    bucket = s3_server.bucket("facevid-models")
    client = s3_server.client()
    for f in folder.iterdir():
        client.upload_file(str(f), "facevid-models", f"vlm/tiny/{f.name}")
    client.put_object(Bucket="facevid-models", Key="vlm/tiny/.cache/lock", Body=b"x")  # hidden: skipped
    settings = VlmSettings(model_path=f"{bucket}/vlm/tiny/", cache_dir=str(tmp_path / "cache"), max_new_tokens=4)
    captioner = VlmCaptioner.load(settings)
    assert captioner.folder.parent == tmp_path / "cache" and not (captioner.folder / ".cache").exists()
    assert captioner.weights_hash == VlmCaptioner.load(VlmSettings(model_path=str(folder))).weights_hash
    assert resolve_model_path(settings.model_path, settings.cache_dir) == captioner.folder  # cached
    with pytest.raises(FileNotFoundError, match=f"{PARAM}.*nothing under"):
        resolve_model_path(f"{bucket}/vlm/none/", settings.cache_dir)


def test_frame_plan_first_frame_plus_non_consecutive_random_frames() -> None:
    for n in range(1, 40):
        for seed in range(5):
            plan = frame_plan(n, 3, seed, f"clip-{n}")
            assert plan[0] == 0 and len(plan) == 1 + min(3, (n - 1) // 2)
            assert all(b - a >= 2 for a, b in zip(plan, plan[1:], strict=False)) and plan[-1] < n
            assert plan == frame_plan(n, 3, seed, f"clip-{n}")  # seeded: the same clip, the same frames
    seen = {tuple(frame_plan(9, 3, 0, f"clip-{i}")) for i in range(400)}
    assert len(seen) == 10  # every set of 3 non-adjacent frames in [2, 9) is drawn (C(5, 3))
    assert frame_plan(7, 3, 0, "x") == [0, 2, 4, 6] and frame_plan(0, 3, 0, "x") == []


def test_sample_frames_decodes_the_planned_frames(shared_videos: Path) -> None:
    path = str(shared_videos / "lp_d18.mp4")
    all_times = [t for t, _ in iter_frames(path)]
    frames, times = sample_frames(path, n_random=3, seed=7, side=SIDE)
    plan = frame_plan(len(all_times), 3, 7, "lp_d18.mp4")
    assert times == [round(all_times[i], 6) for i in plan]
    assert all(f.dtype == np.uint8 and f.shape[2] == 3 and max(f.shape[:2]) == SIDE for f in frames)
    again, _ = sample_frames(path, n_random=3, seed=7, side=SIDE)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    assert sample_frames(path, n_random=3, seed=8, side=SIDE)[1] != times
    assert sample_frames(path, n_random=3, seed=7, side=SIDE, key="another clip")[1] != times


def test_short_and_hostile_files(hostile_videos: dict[str, Path], tmp_path: Path) -> None:
    frames, times = sample_frames(str(hostile_videos["one_frame"]))
    assert times == [0.0] and len(frames) == 1  # what the clip has
    five = make_test_video(tmp_path / "five.mp4", seconds=5 / 25)
    assert sample_frames(str(five))[1] == [0.0, 0.08, 0.16]  # frames 0, 2, 4: all it can show
    assert sample_frames(str(hostile_videos["rotated"]))[0][0].shape == (160, 96, 3)  # upright
    for name in ("zero", "text", "truncated", "audio"):
        with pytest.raises(StageError) as err:
            sample_frames(str(hostile_videos[name]))
        assert err.value.category == "decode", name


def test_import_torchvision_once_from_many_threads() -> None:
    import torch

    from facevid.udfs.models.torch_compat import import_torchvision, stubbed_ops

    with ThreadPoolExecutor(4) as pool:
        modules = list(pool.map(lambda _: import_torchvision(), range(8)))
    assert all(m is modules[0] for m in modules) and modules[0].__version__
    from torchvision.transforms.v2 import functional as tvF  # what the video processors use

    assert tvF.resize(torch.zeros(3, 8, 8), [4, 4]).shape == (3, 4, 4)
    assert stubbed_ops() == (torch.version.cuda is None and "+cu" in modules[0].__version__)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_real_size_qwen2_5_vl_7b_generates_on_cuda(clips) -> None:
    captioner = real_size_captioner(VlmSettings(device="cuda", max_new_tokens=16, max_pixels=448 * 448))
    answers = captioner.generate(clips, canned_answer_fn(captioner.processor, ANSWER), max_new_tokens=200)
    assert answers == [ANSWER] * len(clips)
    assert len(captioner.generate(clips, min_new_tokens=16)) == len(clips)


def test_right_padding_and_unusable_attention_are_refused(tiny_vlms, clips, monkeypatch) -> None:
    captioner = load(tiny_vlms, "qwen3_vl")
    kwargs = captioner._kwargs
    monkeypatch.setattr(captioner, "_kwargs", lambda *a: {**kwargs(*a), "padding_side": "right"})
    with pytest.raises(RuntimeError, match="padded on the right"):
        captioner.prepare(clips)
    if not cuda_available():
        with pytest.raises(ValueError, match="attn_implementation=flash_attention_2"):
            VlmCaptioner.load(VlmSettings(model_path=str(tiny_vlms("qwen3_vl")), attn_implementation="flash_attention_2"))
