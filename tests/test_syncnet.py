"""The SyncNet lip-sync backend: the reference architecture's state dict, its MFCCs, the offset sign
on a synthetic clip with hand-set weights, a real shared clip with random weights, and clips it
cannot score."""

from __future__ import annotations

import math
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from torch import nn

from facevid.udfs.av.mfcc import mel_filterbank, mfcc
from facevid.udfs.av.sync_api import SyncInput
from facevid.udfs.av.syncnet import (
    PARAM,
    SIZE,
    SyncNetBackend,
    SyncNetModel,
    load_syncnet,
    offset_curve,
    parameter_count,
    read_state_dict,
    save_random_weights,
)
from facevid.udfs.media.video import VideoSpan

torch.set_num_threads(1)

# The weight shapes of joonson/syncnet_python SyncNetModel.S (read from its source, 2016 release);
# with 16 BatchNorm layers x 5 entries and 16 biases that is the whole 102-key state dict.
REFERENCE_WEIGHTS = {
    "netcnnaud.0.weight": (64, 1, 3, 3), "netcnnaud.4.weight": (192, 64, 3, 3),
    "netcnnaud.8.weight": (384, 192, 3, 3), "netcnnaud.11.weight": (256, 384, 3, 3),
    "netcnnaud.14.weight": (256, 256, 3, 3), "netcnnaud.18.weight": (512, 256, 5, 4),
    "netfcaud.0.weight": (512, 512), "netfcaud.3.weight": (1024, 512),
    "netfclip.0.weight": (512, 512), "netfclip.3.weight": (1024, 512),
    "netcnnlip.0.weight": (96, 3, 5, 7, 7), "netcnnlip.4.weight": (256, 96, 1, 5, 5),
    "netcnnlip.8.weight": (256, 256, 1, 3, 3), "netcnnlip.11.weight": (256, 256, 1, 3, 3),
    "netcnnlip.14.weight": (256, 256, 1, 3, 3), "netcnnlip.18.weight": (512, 256, 1, 6, 6),
}
NORMS = {"netcnnaud": (1, 5, 9, 12, 15, 19), "netcnnlip": (1, 5, 9, 12, 15, 19), "netfcaud": (1,), "netfclip": (1,)}
TONE_HZ = 1000  # 16 samples a period: every 10 ms hop and 25 ms frame hold whole periods


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_random_weights(str(tmp_path_factory.mktemp("syncnet") / "syncnet_random.model"), seed=7)


@pytest.fixture(scope="session")
def backend(random_weights: str) -> SyncNetBackend:
    return SyncNetBackend(random_weights, batch=48)  # 48: chunks straddle the clips of one call


def test_the_state_dict_has_the_reference_keys_and_shapes(random_weights: str, tmp_path: Path) -> None:
    own = SyncNetModel().state_dict()
    assert {k: tuple(v.shape) for k, v in own.items() if v.ndim > 1} == REFERENCE_WEIGHTS
    norms = {f"{tower}.{i}.{p}" for tower, idx in NORMS.items() for i in idx
             for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    biases = {k.replace(".weight", ".bias") for k in REFERENCE_WEIGHTS}
    assert set(own) == set(REFERENCE_WEIGHTS) | norms | biases and len(own) == 102
    assert parameter_count(SyncNetModel()) == 13_631_616

    saved = read_state_dict(random_weights)  # the production loader reads what the helper saved
    fresh = SyncNetModel()
    fresh.load_state_dict(saved, strict=True)
    loaded = load_syncnet(random_weights)
    assert not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in saved.items())
    assert torch.equal(read_state_dict(save_random_weights(str(tmp_path / "again.pt"), seed=7))["netcnnlip.0.weight"],
                       saved["netcnnlip.0.weight"])  # seeded

    # a file saved before PyTorch 0.4.1 (no num_batches_tracked), under the reference's instance prefix
    old = {f"__S__.{k}": v for k, v in saved.items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": old}, tmp_path / "old.pth")
    assert torch.equal(load_syncnet(str(tmp_path / "old.pth")).netfcaud[3].weight, saved["netfcaud.3.weight"])


def test_weights_that_do_not_fit_or_do_not_exist_are_clear_errors(random_weights: str, tmp_path: Path) -> None:
    state = read_state_dict(random_weights)
    del state["netcnnlip.18.bias"]
    state["netcnnlip.21.weight"] = torch.zeros(1)
    state["netfcaud.3.weight"] = torch.zeros(512, 512)
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match=PARAM) as err:
        load_syncnet(str(tmp_path / "wrong.pt"))
    message = str(err.value)
    assert "missing keys: netcnnlip.18.bias" in message and "unexpected keys: netcnnlip.21.weight" in message
    assert "netfcaud.3.weight (512, 512) != (1024, 512)" in message

    for path in (None, "", str(tmp_path / "absent.model"), "dbfs:/no/such/syncnet_v2.model", str(tmp_path)):
        with pytest.raises(FileNotFoundError, match=PARAM):
            SyncNetBackend(path)  # type: ignore[arg-type]
    (tmp_path / "garbage.model").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=PARAM):
        SyncNetBackend(str(tmp_path / "garbage.model"))


def test_mfcc_frames_scaling_and_a_tone_s_energy() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(16000) * 3000
    feats = mfcc(noise)
    assert feats.shape == (1 + math.ceil((16000 - 400) / 160), 13) == (99, 13)
    assert mfcc(noise[:300]).shape == (1, 13)
    # a louder copy: only coefficient 0 (log frame energy) moves, by 2 ln(gain)
    louder = mfcc(noise * 10)
    assert np.allclose(louder[:, 0] - feats[:, 0], 2 * np.log(10), atol=1e-6)
    assert np.allclose(louder[:, 1:], feats[:, 1:], atol=1e-6)
    silence = mfcc(np.zeros(4000))
    assert np.allclose(silence[:, 0], np.log(np.finfo(float).eps)) and np.allclose(silence[:, 1:], 0, atol=1e-9)
    # a pure tone's energy lands in the mel filter centred nearest its frequency
    bank = mel_filterbank(26, 512, 16000)
    tone = np.sin(2 * np.pi * TONE_HZ * np.arange(400) / 16000)
    power = np.abs(np.fft.rfft(tone, 512)) ** 2 / 512
    centres = (bank * np.arange(257)).sum(1) / bank.sum(1) * 16000 / 512
    assert np.argmax(bank @ power) == np.argmin(np.abs(centres - TONE_HZ))


def test_mfcc_equals_python_speech_features(shared_videos: Path) -> None:
    psf = pytest.importorskip("python_speech_features")
    clip = decode(shared_videos / "lp_d18.mp4", seconds=2.0)
    int16 = np.round(clip.audio * 32767).astype(np.int16)  # what the reference read from its wav
    assert np.allclose(mfcc(int16), psf.mfcc(int16, 16000), rtol=1e-9, atol=1e-9)


def test_offset_curve_sign_on_known_embeddings() -> None:
    rng = np.random.default_rng(1)
    seen = torch.from_numpy(rng.standard_normal((60, 8)))
    for delay in (-5, 0, 3):
        heard = torch.roll(seen, delay, dims=0)  # audio window i + delay holds the sound of video window i
        curve = offset_curve(seen, heard, vshift=8)
        assert int(np.argmin(curve)) - 8 == delay and curve.min() < 1e-5 < curve.max()


def probe_weights(path: Path) -> str:
    """A real ``SyncNetModel`` with hand-set weights: the lip embedding is the blue level of the
    window's centre frame (0 .. 1; blue is input channel 0: the reference reads BGR), the audio
    embedding the loudness around the window's
    centre (digital silence 0, the test tone 1), everything else 0. A clip whose frames and sound
    switch on and off together at some delay then has its distance minimum at that delay."""
    model = SyncNetModel().eval()
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Conv2d | nn.Conv3d | nn.Linear):
                layer.weight.zero_()
                layer.bias.zero_()
        lip, aud = model.netcnnlip, model.netcnnaud
        lip[0].weight[0, 0, 2] = 1 / (49 * 255)  # channel 0 = mean blue of the centre frame (of 5), 0..1
        for i in (4, 8, 11, 14, 18):
            lip[i].weight[0, 0, 0] = 1 / lip[i].weight[0, 0, 0].numel()  # spatial means of channel 0
        aud[0].weight[0, 0, 1, 1] = 1.0  # the MFCCs; silence (log eps = -36 in c0, 0 elsewhere) -> 0
        for i in (4, 8, 11, 14):
            aud[i].weight[0, 0, 1, 1] = 1.0  # passed on; only the max-pools widen it
        aud[18].weight[0, 0, :, 1:3] = 1 / 10  # the central columns of the 0.2 s
        for head in (model.netfclip, model.netfcaud):
            head[0].weight[0, 0] = head[3].weight[0, 0] = 1
        model.netfclip[3].weight[0, 0] /= model.forward_lip(torch.full((1, 3, 5, SIZE, SIZE), 255.0))[0, 0]
        loud = torch.from_numpy(mfcc(tone(16000) * 32768).T.astype(np.float32))[None, None, :, 20:40]
        model.netfcaud[3].weight[0, 0] /= model.forward_aud(loud)[0, 0]
    torch.save(model.state_dict(), path)
    return str(path)


def tone(samples: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * np.arange(samples) / 16000)).astype(np.float32)


def on_off_clip(delay: int, on: tuple[int, int, int] = (0, 0, 255), frames: int = 36, seed: int = 4) -> SyncInput:
    """RGB frames alternating ``on`` (blue) and red in random runs of 2-6 at 25 fps; the tone plays
    where the frame ``delay`` frames earlier was ``on`` (positive ``delay``: the audio is later)."""
    rng = np.random.default_rng(seed)
    runs = [np.full(int(rng.integers(2, 7)), k % 2) for k in range(frames)]
    state = np.concatenate(runs)[: frames + 20]
    seen, heard = state[10:10 + frames], state[10 - delay:10 - delay + frames]
    colour = np.where(seen[:, None] == 1, on, [255, 0, 0]).astype(np.uint8)
    faces = np.broadcast_to(colour[:, None, None, :], (frames, SIZE, SIZE, 3))
    return SyncInput(fps=25.0, mouth_open=np.zeros(frames), audio=tone(frames * 640) * np.repeat(heard, 640),
                     faces=faces)


def test_positive_offset_means_the_audio_is_later(tmp_path: Path) -> None:
    probe = SyncNetBackend(probe_weights(tmp_path / "probe.pt"), vshift=6)
    *results, green = probe.score([on_off_clip(d) for d in (-4, 0, 3)] + [on_off_clip(0, on=(0, 255, 0))])
    assert [r.offset_ms for r in results] == [-160.0, 0.0, 120.0]
    for r in results:
        assert len(r.curve) == 13 and r.confidence > 0.25 and min(r.curve) < 0.25 and r.note is None
    # the probe reads blue only: green/red frames look alike to it, so nothing lines up (RGB -> BGR checked)
    assert green.confidence < 0.1 and min(green.curve) > 0.5


def decode(path: Path, seconds: float) -> SyncInput:
    """The first ``seconds`` of a video at its own rate: centre square resized to 224 (RGB) and the
    audio as 16 kHz mono float32 on the frames' clock."""
    faces, chunks, first = [], [], None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
    with VideoSpan(str(path), 0.0, seconds, audio=True) as span:
        fps = float(span.fps)
        for t, frame in span.frames(audio=True):
            if isinstance(frame, av.AudioFrame):
                first = t if first is None else first
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
                continue
            img = frame.to_ndarray(format="rgb24")
            side = min(img.shape[:2])
            y, x = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
            faces.append(cv2.resize(img[y:y + side, x:x + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    audio = np.concatenate(chunks)
    lead = int(round((first or 0.0) * 16000))
    audio = np.concatenate([np.zeros(max(lead, 0), np.float32), audio[max(-lead, 0):]])[: int(seconds * 16000)]
    return SyncInput(fps=fps, mouth_open=np.zeros(len(faces)), audio=audio, faces=np.stack(faces))


@pytest.fixture(scope="session")
def talking(shared_videos: Path) -> SyncInput:
    return decode(shared_videos / "retalking_face1.mp4", seconds=3.0)  # 22.1 fps: resampled to 25


def test_a_real_clip_with_random_weights(backend: SyncNetBackend, talking: SyncInput) -> None:
    assert abs(talking.fps - 22.13) < 0.01 and len(talking.audio) == 48000
    mute = SyncInput(talking.fps, talking.mouth_open, None, faces=talking.faces)
    short = SyncInput(25.0, np.zeros(20), talking.audio[:12800], faces=talking.faces[:20])
    started = time.process_time()
    first, none, brief, again = backend.score([talking, mute, short, talking])
    cpu_s = time.process_time() - started
    assert first.offset_ms is not None and math.isfinite(first.offset_ms) and abs(first.offset_ms) <= 600
    assert first.offset_ms % 40 == 0 and first.confidence >= 0 and len(first.curve) == 31
    assert np.isfinite(first.curve).all() and first.note is None
    assert again.curve == pytest.approx(first.curve, rel=1e-5)  # windows split differently across chunks
    assert (none.offset_ms, none.confidence, none.note) == (None, None, "no audio")
    assert brief.offset_ms is None and "too short" in brief.note and "needs 20" in brief.note
    print(f"syncnet random weights, CPU 1 thread: {cpu_s / 6.0:.2f} s CPU per clip-second (batch 48)")


def test_clips_it_cannot_score_get_nulls_that_say_why(backend: SyncNetBackend, talking: SyncInput) -> None:
    faces, audio = talking.faces[:30], talking.audio[:19200]
    cases = {
        "silent audio": SyncInput(25.0, np.zeros(30), np.zeros_like(audio), faces=faces),
        "no face crops": SyncInput(25.0, np.zeros(30), audio, faces=None),
        "audio is not mono": SyncInput(25.0, np.zeros(30), np.stack([audio, audio]), faces=faces),
        "face crops are not": SyncInput(25.0, np.zeros(30), audio, faces=faces[..., 0]),
        "bad clock": SyncInput(float("nan"), np.zeros(30), audio, faces=faces),
    }
    for want, result in zip(cases, backend.score(list(cases.values())), strict=True):
        assert result.offset_ms is None and result.confidence is None and result.note.startswith(want)
    assert backend.score([]) == []


@pytest.mark.s3
def test_weights_from_s3(s3_server, random_weights: str) -> None:
    bucket = s3_server.bucket("facevid-models")
    s3_server.client().upload_file(random_weights, "facevid-models", "syncnet/syncnet_v2.model")
    model = load_syncnet(f"{bucket}/syncnet/syncnet_v2.model")
    assert torch.equal(model.netcnnaud[0].weight, read_state_dict(random_weights)["netcnnaud.0.weight"])
    with pytest.raises(FileNotFoundError, match=PARAM):
        load_syncnet(f"{bucket}/syncnet/absent.model")


@pytest.mark.gpu
def test_throughput_on_cuda(random_weights: str, talking: SyncInput) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu, cpu = SyncNetBackend(random_weights, device="cuda", batch=64), SyncNetBackend(random_weights)
    on_gpu, on_cpu = gpu.score([talking])[0], cpu.score([talking])[0]
    assert on_gpu.curve == pytest.approx(on_cpu.curve, rel=2e-2)  # TF32 convolutions on the GPU
    rng = np.random.default_rng(0)
    clips = [SyncInput(25.0, np.zeros(250), (rng.standard_normal(160000) * 0.1).astype(np.float32),
                       faces=rng.integers(0, 256, (250, SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(8)]
    gpu.score(clips[:1])  # warm-up (cuDNN autotuning)
    torch.cuda.synchronize()
    started = time.perf_counter()
    results = gpu.score(clips)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    assert all(r.offset_ms is not None for r in results)
    print(f"syncnet on {torch.cuda.get_device_name()}: {80 / elapsed:.1f} clip-seconds/s "
          f"({8 * 246 / elapsed:.0f} windows/s, batch 64)")
