"""The training loop on real frames: checkpoints, rollback on NaN / spikes with a learning-rate cut, resume
after a crash, divergence; and the tiny model's own contract (save/load, generation)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from facevid.udfs.train.backend import GenerationRequest
from facevid.udfs.train.checkpoints import local_checkpoints
from facevid.udfs.train.loop import Trainer, TrainingDiverged, TrainSettings, parse_faults
from facevid.udfs.train.tiny_video import TinyBackend, TinyConfig, text_ids

SIZE, FRAMES = 16, 4


@pytest.fixture(scope="module")
def clips(shared_videos: Path) -> list[tuple[torch.Tensor, str]]:
    """(video (T, C, H, W) in [-1, 1], caption) windows of real talking-face clips."""
    import cv2

    from facevid.udfs.media.video import iter_frames

    out = []
    for name, caption in (("lp_d18", "a man talks"), ("retalking_face5", "a woman with glasses talks"),
                          ("sadtalker_aoc", "a person talks and nods")):
        frames = [cv2.resize(f[:, :, ::-1], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
                  for _, f in itertools.islice(iter_frames(str(shared_videos / f"{name}.mp4"), every_s=0.08), 40)]
        for s in range(0, len(frames) - FRAMES, 4):
            v = np.stack(frames[s:s + FRAMES]).astype(np.float32) / 127.5 - 1
            out.append((torch.from_numpy(v).permute(0, 3, 1, 2).contiguous(), caption))
    return out


class Hooks:
    def __init__(self) -> None:
        self.logged: list[tuple[int, dict]] = []
        self.saved: list[int] = []
        self.events: list[dict] = []
        self.marked: set[str] = set()

    def metrics(self, values, step):
        self.logged.append((step, dict(values)))

    def checkpoint(self, folder, state):
        self.saved.append(state.step)

    def event(self, name, detail):
        self.events.append({"name": name, **detail})

    def fired(self):
        return set(self.marked)

    def mark_fired(self, fault):
        self.marked.add(fault)


def batches_of(clips, batch_size: int, asked: list[int] | None = None):
    """A deterministic endless order over ``clips``; records each offset the loop asks for."""
    def batches(offset: int):
        if asked is not None:
            asked.append(offset)
        i = offset
        while True:
            items = [clips[(i + k) % len(clips)] for k in range(batch_size)]
            video = torch.stack([v for v, _ in items])
            yield {"video": video, "first_frame": video[:, 0], "caption": [c for _, c in items],
                   "clip_id": [str(i + k) for k in range(batch_size)], "index": torch.arange(i, i + batch_size)}
            i += batch_size
    return batches


def trainer(tmp: Path, clips, hooks: Hooks, asked=None, mode: str = "t2v", **kw) -> Trainer:
    torch.set_num_threads(1)
    settings = TrainSettings(**{"steps": 30, "batch_size": 2, "lr": 2e-3, "checkpoint_every": 10, "log_every": 5,
                                "spike_warmup": 5, **kw})
    backend = TinyBackend(TinyConfig(mode=mode, channels=8), seed=0)
    return Trainer(backend, batches_of(clips, settings.batch_size, asked), settings, hooks, tmp)


def test_nan_rolls_back_to_the_last_checkpoint_with_a_reduced_learning_rate(tmp_path: Path, clips) -> None:
    hooks, asked = Hooks(), []
    result = trainer(tmp_path, clips, hooks, asked, faults="nan@25").run()
    assert result.state.step == 30 and result.state.recoveries == 1
    (event,) = hooks.events
    assert event["reason"] == "nan_loss" and event["at_step"] == 25 and event["to_step"] == 20
    assert event["lr_before"] == pytest.approx(2e-3) and event["lr_after"] == pytest.approx(1e-3)
    assert asked == [0, 40]  # the data stream restarted at the checkpoint's position (20 steps x 2)
    assert hooks.marked == {"nan@25"} and hooks.saved == [0, 10, 20, 30]
    lrs = {step: v["lr"] for step, v in hooks.logged if "loss" in v}
    assert lrs[20] == pytest.approx(2e-3) and lrs[30] == pytest.approx(1e-3)
    assert all(np.isfinite(v["loss"]) for _, v in hooks.logged if "loss" in v)


def test_a_loss_spike_is_an_anomaly_and_fires_once(tmp_path: Path, clips) -> None:
    hooks = Hooks()
    result = trainer(tmp_path, clips, hooks, faults="spike@17").run()
    assert [e["reason"] for e in hooks.events] == ["loss_spike"] and result.state.recoveries == 1
    assert hooks.events[0]["to_step"] == 10


def test_too_many_anomalies_stop_the_run(tmp_path: Path, clips) -> None:
    hooks = Hooks()
    with pytest.raises(TrainingDiverged, match="max_recoveries 1"):
        trainer(tmp_path, clips, hooks, faults="nan@5,nan@8", max_recoveries=1).run()
    assert [e["recovery"] for e in hooks.events] == [1, 2]
    assert hooks.events[1]["lr_after"] == pytest.approx(2e-3 / 4)


def test_resume_after_a_crash_restores_model_optimizer_and_data_position(tmp_path: Path, clips) -> None:
    first = trainer(tmp_path, clips, Hooks(), steps=20)
    first.run()
    weights = {k: v.clone() for k, v in first.backend.trainable_state(first.module).items()}
    hooks, asked = Hooks(), []
    again = trainer(tmp_path, clips, hooks, asked, steps=30)
    again.resume(local_checkpoints(tmp_path / "checkpoints")[-1], "crash (exit -9)")
    restored = again.backend.trainable_state(again.module)
    assert all(torch.equal(weights[k], restored[k]) for k in weights)
    assert again.state.step == 20 and again.state.lr == pytest.approx(1e-3) and again.state.recoveries == 1
    assert hooks.events[0]["reason"] == "crash (exit -9)"
    again.run()
    assert asked == [40] and again.state.step == 30


def test_i2v_trains_and_the_saved_model_generates_the_same_videos(tmp_path: Path, clips) -> None:
    t = trainer(tmp_path, clips, Hooks(), mode="i2v", steps=5)
    t.run()
    t.backend.save(t.module, tmp_path / "model")
    loaded = TinyBackend.load(tmp_path / "model")
    first = clips[0][0][:1].unsqueeze(0)[:, 0]
    request = GenerationRequest(prompts=["a man talks"], first_frames=first, num_frames=FRAMES, height=SIZE,
                                width=SIZE, steps=4, seed=3)
    a, b = t.backend.generate(request), loaded.generate(request)
    assert a.shape == (1, FRAMES, 3, SIZE, SIZE) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="first_frames"):
        loaded.generate(GenerationRequest(prompts=["x"], num_frames=FRAMES, height=SIZE, width=SIZE, steps=2))
    with pytest.raises(FileNotFoundError, match="no tiny model"):
        TinyBackend.load(tmp_path)


def test_settings_and_faults_are_validated() -> None:
    assert parse_faults("nan@80, kill@150") == {80: "nan@80", 150: "kill@150"}
    for bad in ("nan", "boom@3", "nan@0", "kill@x"):
        with pytest.raises(ValueError, match="finetune.faults"):
            parse_faults(bad)
    with pytest.raises(ValueError, match="lr_decay"):
        TrainSettings(lr_decay=1.5)
    with pytest.raises(ValueError, match="mode"):
        TinyConfig(mode="v2v")
    assert text_ids("", 64) == [0] and len(text_ids("A person talks", 64)) == 5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_loop_on_cuda_in_bf16_with_a_rollback(tmp_path: Path, clips) -> None:
    """The same loop on a GPU: accelerate places the model on CUDA, bf16 autocast, a NaN still rolls back."""
    settings = TrainSettings(steps=30, batch_size=2, lr=2e-3, checkpoint_every=10, log_every=5, spike_warmup=5,
                             mixed_precision="bf16", faults="nan@15")
    backend = TinyBackend(TinyConfig(channels=16), device="cuda", seed=0)
    hooks = Hooks()
    t = Trainer(backend, batches_of(clips, 2), settings, hooks, tmp_path, cpu=False)
    assert t.acc.device.type == "cuda"
    result = t.run()
    assert result.state.step == 30 and [e["reason"] for e in hooks.events] == ["nan_loss"]
    assert next(backend.model.parameters()).is_cuda
