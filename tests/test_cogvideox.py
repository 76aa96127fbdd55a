"""The CogVideoX backend on tiny random-weight pipelines (``tiny_cogvideox``) and real talking-face
frames: LoRA and full fine-tuning steps, the loss going down, generation, save/load through the
production loader, and the errors a user meets; one 2B-sized LoRA step on a GPU."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facevid.udfs.media.video import iter_frames
from facevid.udfs.models.runtime import cuda_available
from facevid.udfs.train.backend import GenerationRequest, VideoBackend
from facevid.udfs.train.cogvideox import CogVideoXBackend, CogVideoXSettings

torch.set_num_threads(1)

CLIPS = ("retalking_face1.mp4", "retalking_face4.mp4")
FRAMES, SIDE, STEPS, LR = 9, 64, 20, 1e-2


def clip_tensor(path: Path, frames: int = FRAMES, side: int = SIDE) -> torch.Tensor:
    """The first ``frames`` frames of a real clip, centre-cropped square, ``side`` px, RGB in [-1, 1]
    as (T, C, H, W)."""
    out = []
    for _, bgr in iter_frames(str(path), max_side=2 * side):
        h, w = bgr.shape[:2]
        s = min(h, w)
        square = bgr[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        out.append(cv2.cvtColor(cv2.resize(square, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        if len(out) == frames:
            break
    video = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float()
    return video / 127.5 - 1.0


@pytest.fixture(scope="module")
def batch(shared_videos: Path) -> dict:
    video = torch.stack([clip_tensor(shared_videos / name) for name in CLIPS])
    return {"video": video, "first_frame": video[:, 0].clone(), "caption": ["A man in a suit talks.",
                                                                            "A woman talks in front of a blue wall."]}


def settings(folder: Path, mode: str, **kw) -> CogVideoXSettings:
    base = dict(model_path=str(folder), mode=mode, lora_rank=4, lora_alpha=8, num_frames=FRAMES, height=SIDE,
                width=SIDE, device="cpu")
    return CogVideoXSettings(**{**base, **kw})


def step(backend: CogVideoXBackend, module, opt, batch: dict, seed: int) -> float:
    loss = backend.loss(module, batch, torch.Generator().manual_seed(seed))
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss.item()


def split_params(module) -> tuple[dict, dict]:
    named = {k: v.detach().clone() for k, v in module.named_parameters()}
    return ({k: v for k, v in named.items() if "lora_" in k}, {k: v for k, v in named.items() if "lora_" not in k})


@pytest.fixture(scope="module")
def trained(tiny_cogvideox, batch, tmp_path_factory):
    """``trained(mode)``: a LoRA backend after STEPS AdamW steps on the same real batch and seed, with
    the parameters before/after, the losses and the saved result folder (built once per mode)."""
    done: dict[str, dict] = {}

    def get(mode: str) -> dict:
        if mode not in done:
            backend = CogVideoXBackend(settings(tiny_cogvideox(mode), mode))
            module = backend.trainable_module()
            before = split_params(module)
            opt = torch.optim.AdamW(backend.trainable_parameters(module), lr=LR)
            losses = [step(backend, module, opt, batch, seed=0) for _ in range(STEPS)]
            out = tmp_path_factory.mktemp(f"lora_{mode}")
            done[mode] = dict(backend=backend, module=module, before=before, after=split_params(module),
                              losses=losses, facts=backend.save(module, out), folder=out)
        return done[mode]

    return get


def request(mode: str, batch: dict, seed: int = 3) -> GenerationRequest:
    return GenerationRequest(prompts=batch["caption"], first_frames=batch["first_frame"] if mode == "i2v" else None,
                             num_frames=FRAMES, height=SIDE, width=SIDE, steps=3, guidance_scale=6.0, seed=seed)


@pytest.mark.parametrize("mode", ["t2v", "i2v"])
def test_lora_steps_train_only_the_adapters_and_the_loss_goes_down(trained, mode) -> None:
    run = trained(mode)
    assert isinstance(run["backend"], VideoBackend)
    assert all(math.isfinite(v) for v in run["losses"])
    (lora0, base0), (lora1, base1) = run["before"], run["after"]
    assert lora0 and set(lora0) == set(lora1)
    changed = [k for k in lora0 if not torch.equal(lora0[k], lora1[k])]
    assert len(changed) == len(lora0), "every LoRA matrix moves"
    assert all(torch.equal(base0[k], base1[k]) for k in base0), "the base transformer is frozen"
    trainable = {id(p) for p in run["backend"].trainable_parameters(run["module"])}
    assert trainable == {id(p) for n, p in run["module"].named_parameters() if "lora_" in n}
    first, last = run["losses"][0], np.mean(run["losses"][-3:])
    assert last < 0.9 * first, run["losses"]


def test_full_finetune_changes_the_base_weights(tiny_cogvideox, batch) -> None:
    backend = CogVideoXBackend(settings(tiny_cogvideox("t2v"), "t2v", training="full"))
    module = backend.trainable_module()
    before = {k: v.detach().clone() for k, v in module.named_parameters()}
    opt = torch.optim.AdamW(backend.trainable_parameters(module), lr=1e-3)
    assert math.isfinite(step(backend, module, opt, batch, seed=0))
    moved = [k for k, v in module.named_parameters() if not torch.equal(before[k], v)]
    assert "transformer_blocks.0.attn1.to_q.weight" in moved and len(moved) > 0.9 * len(before)
    state = backend.trainable_state(module)
    assert set(state) == set(module.state_dict()) and not any("lora" in k for k in state)


@pytest.mark.parametrize("mode", ["t2v", "i2v"])
def test_generation_shape_and_range(trained, batch, mode) -> None:
    video = trained(mode)["backend"].generate(request(mode, batch))
    assert video.shape == (2, FRAMES, 3, SIDE, SIDE) and video.dtype == torch.float32
    assert video.min() >= 0.0 and video.max() <= 1.0 and video.std() > 0.01


@pytest.mark.parametrize("mode", ["t2v", "i2v"])
def test_saved_lora_reloads_through_the_loader_and_reproduces_generation(trained, batch, mode) -> None:
    run = trained(mode)
    assert run["facts"]["format"] == "diffusers-lora"
    assert {"pytorch_lora_weights.safetensors", "cogvideox.json"} <= set(run["facts"]["files"])
    s = run["backend"].settings
    trained_video = run["backend"].generate(request(mode, batch))
    loaded = CogVideoXBackend.load(replace(s, model_path=None), run["folder"])  # the base named in the folder
    reloaded_video = loaded.generate(request(mode, batch))
    assert torch.allclose(trained_video, reloaded_video, atol=1e-5), (trained_video - reloaded_video).abs().max()
    base_video = CogVideoXBackend.load(s).generate(request(mode, batch))
    assert (trained_video - base_video).abs().max() > 1e-3, "the LoRA changes what is generated"
    other = "i2v" if mode == "t2v" else "t2v"
    with pytest.raises(ValueError, match=f"evaluate.weights: .* was trained for mode {mode}, not {other}"):
        CogVideoXBackend.load(replace(s, mode=other), run["folder"])


def test_trainable_state_round_trips_into_a_fresh_backend(trained, tiny_cogvideox, batch) -> None:
    run = trained("t2v")
    state = run["backend"].trainable_state(run["module"])
    assert state and all("lora_" in k for k in state) and all(v.device.type == "cpu" for v in state.values())
    fresh = CogVideoXBackend(run["backend"].settings)
    module = fresh.trainable_module()
    fresh.load_trainable_state(module, state)
    with torch.no_grad():
        a = run["backend"].loss(run["module"], batch, torch.Generator().manual_seed(5))
        b = fresh.loss(module, batch, torch.Generator().manual_seed(5))
    assert torch.allclose(a, b, rtol=1e-5)
    with pytest.raises(ValueError, match="LoRA keys differ"):
        CogVideoXBackend(settings(tiny_cogvideox("t2v"), "t2v", lora_rank=2, lora_targets=["to_q"])) \
            .load_trainable_state(module, {k: v for k, v in state.items() if "to_q" in k})


def test_full_result_saves_and_loads(tiny_cogvideox, batch, tmp_path) -> None:
    backend = CogVideoXBackend(settings(tiny_cogvideox("t2v"), "t2v", training="full"))
    module = backend.trainable_module()
    step(backend, module, torch.optim.AdamW(backend.trainable_parameters(module), lr=1e-3), batch, seed=1)
    facts = backend.save(module, tmp_path / "full")
    assert facts["format"] == "diffusers-transformer" and "transformer/config.json" in facts["files"]
    loaded = CogVideoXBackend.load(backend.settings, tmp_path / "full")
    assert torch.equal(loaded.transformer.state_dict()["proj_out.weight"], module.state_dict()["proj_out.weight"])
    assert torch.allclose(backend.generate(request("t2v", batch)), loaded.generate(request("t2v", batch)), atol=1e-5)


def test_ofs_config_trains(tiny_cogvideox, batch) -> None:
    """A transformer with ``ofs_embed_dim`` (CogVideoX 1.5 I2V) gets the pipeline's ofs value."""
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXTransformer3DModel

    pipe = CogVideoXImageToVideoPipeline.from_pretrained(tiny_cogvideox("i2v"))
    config = {**pipe.transformer.config, "ofs_embed_dim": 32}
    pipe.transformer = CogVideoXTransformer3DModel.from_config(config)
    backend = CogVideoXBackend(settings(None, "i2v", model_path=None), pipe=pipe)
    loss = backend.loss(backend.trainable_module(), batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert math.isfinite(loss.item()) and backend.describe()["weights_hash"] is None


def test_missing_or_invalid_model_folder_is_one_clear_error(tiny_cogvideox, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"finetune\.model_path: .*does not exist"):
        CogVideoXBackend(settings(tmp_path / "nowhere", "t2v"))
    with pytest.raises(FileNotFoundError, match=r"finetune\.model_path: .*not set"):
        CogVideoXBackend(CogVideoXSettings())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"finetune\.model_path: .*has no model_index\.json"):
        CogVideoXBackend(settings(tmp_path / "empty", "t2v"))
    with pytest.raises(ValueError, match=r"finetune\.model_path: .*holds a CogVideoXPipeline, mode i2v"):
        CogVideoXBackend(settings(tiny_cogvideox("t2v"), "i2v"))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_cogvideox("t2v"), broken)
    shutil.rmtree(broken / "transformer")
    with pytest.raises(ValueError, match=r"finetune\.model_path: .*does not load as CogVideoXPipeline"):
        CogVideoXBackend(settings(broken, "t2v"))
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"finetune\.model_path: .*not readable JSON"):
        CogVideoXBackend(settings(broken, "t2v"))
    with pytest.raises(FileNotFoundError, match=r"evaluate\.weights: .*neither"):
        CogVideoXBackend.load(settings(tiny_cogvideox("t2v"), "t2v"), tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"evaluate\.weights: .*does not exist"):
        CogVideoXBackend.load(settings(tiny_cogvideox("t2v"), "t2v"), tmp_path / "no-result")


def test_wrong_frame_counts_and_shapes_are_value_errors(trained, batch) -> None:
    with pytest.raises(ValueError, match=r"finetune\.num_frames must be 4k\+1"):
        CogVideoXSettings(num_frames=48)
    with pytest.raises(ValueError, match=r"finetune\.height must be a multiple of 16"):
        CogVideoXSettings(height=100)
    with pytest.raises(ValueError, match=r"finetune\.training must be one of"):
        CogVideoXSettings(training="qlora")
    run = trained("t2v")
    backend, module = run["backend"], run["module"]
    with pytest.raises(ValueError, match=r"batch video must be \(B, 9, 3, 64, 64\).*got \(2, 8, 3, 64, 64\)"):
        backend.loss(module, {**batch, "video": batch["video"][:, :8]})
    with pytest.raises(ValueError, match="num_frames must be 4k\\+1"):
        backend.generate(GenerationRequest(prompts=["a man"], num_frames=10, height=SIDE, width=SIDE, steps=1))
    i2v = trained("i2v")["backend"]
    with pytest.raises(ValueError, match="height x width 128x128 must be the transformer's sample size 64x64"):
        CogVideoXBackend(settings(Path(i2v.settings.model_path), "i2v", height=128, width=128))
    with pytest.raises(ValueError, match="max_text_seq_length 77 differs"):
        CogVideoXBackend(settings(Path(i2v.settings.model_path), "i2v", max_text_seq_length=77))


def test_describe_names_the_model(trained) -> None:
    facts = trained("i2v")["backend"].describe()
    assert facts["backend"] == "cogvideox" and facts["pipeline"] == "CogVideoXImageToVideoPipeline"
    assert facts["rotary"] and facts["latent_shape"] == [3, 4, 8, 8] and len(facts["weights_hash"]) == 16
    assert 0 < facts["trainable_params"] < facts["transformer_params"]
    json.dumps(facts)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_2b_sized_lora_step_on_cuda() -> None:
    """One LoRA step of a CogVideoX-2B-sized transformer (random weights, bf16) on 49 frames of
    480x720 (latents 13x60x90) with gradient checkpointing; random T5-shaped prompt embeddings."""
    from tiny_cogvideox import real_size_pipeline

    backend = CogVideoXBackend(CogVideoXSettings(mode="t2v", device="cuda", lora_rank=64, lora_alpha=64),
                               pipe=real_size_pipeline("cuda", torch.bfloat16))
    module = backend.trainable_module()
    opt = torch.optim.AdamW(backend.trainable_parameters(module), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    batch = {"video": torch.rand(1, 49, 3, 480, 720) * 2 - 1, "caption": ["x"],
             "prompt_embeds": torch.randn(1, 226, 4096, generator=gen)}
    times = []
    for _ in range(2):  # the first step warms up kernels
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = backend.loss(module, batch, gen)
        loss.backward()
        opt.step()
        opt.zero_grad()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"cogvideox 2B LoRA step: {times[-1]:.2f} s (first {times[0]:.2f} s), peak {peak:.1f} GiB")
    assert math.isfinite(loss.item()) and backend.describe()["latent_shape"] == [13, 16, 60, 90]
