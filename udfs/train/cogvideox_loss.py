"""CogVideoX's training objective, as diffusers' maintained LoRA recipes compute it.

Followed (huggingface/diffusers @ 58eb52c0, ``examples/cogvideo/``):

- ``train_cogvideox_lora.py`` L1235-1238 (videos ``(B, F, C, H, W)`` -> ``(B, C, F, H, W)``, VAE
  encode), L1278-1285 (``latent_dist.sample() * vae.config.scaling_factor``, permuted back to
  ``(B, F, C, h, w)``), L1408-1417 (T5 prompt embeddings, ``max_text_seq_length`` tokens, no grad),
  L1419-1427 (noise, ``randint(0, num_train_timesteps)`` per sample), L1429-1442 (rotary embeddings
  only when ``use_rotary_positional_embeddings``), L1446-1466 (``scheduler.add_noise``, the
  transformer, ``scheduler.get_velocity(model_output, noisy, t)`` = the x0 prediction of a
  v-prediction model, weights ``1 / (1 - alphas_cumprod[t])``, per-sample mean, batch mean);
  the scheduler is ``CogVideoXDPMScheduler`` from the pipeline's scheduler config (L1069).
- ``train_cogvideox_image_to_video_lora.py`` L1213-1225 (the first frame, noised with
  ``sigma = exp(N(-3, 0.5))``, VAE-encoded), L1247-1257 (image latents scaled, zero-padded to the
  video's latent frames, zeroed with probability ``noised_image_dropout``), L1403-1409 (channel
  concat ``[noisy video latents, image latents]``), L1434-1444 (velocity against the noisy VIDEO
  latents, target the clean video latents).

Where the recipes and the pipelines differ, the pipelines win, so that training matches generation:
rotary embeddings come from the pipeline's own ``_prepare_rotary_positional_embeddings`` (its base
grid is the transformer's ``sample_height/width``; the recipe hard-codes 480x720, the same for the
released 1.0 checkpoints), the ``ofs`` embedding is ``2.0`` when the config has ``ofs_embed_dim``
(``pipeline_cogvideox_image2video.py``, CogVideoX 1.5 I2V) and image latents are divided by the
scaling factor when the VAE says ``invert_scale_latents`` (1.5 I2V; ``prepare_latents`` there).
Deviation: the squared error is computed in float32 (the recipe's bf16 difference loses bits), and
random draws come from ``generator`` (CPU or device) so a seeded step is reproducible.
"""

from __future__ import annotations

from typing import Any

import torch

IMAGE_NOISE_MEAN, IMAGE_NOISE_STD = -3.0, 0.5  # log-sigma of the first frame's noise (I2V recipe)
OFS = 2.0  # the I2V pipeline's ofs value


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def encode_video(vae: Any, video: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``(B, F, C, H, W)`` frames in ``[-1, 1]`` -> scaled latents ``(B, f, c, h, w)`` (no grad)."""
    with torch.no_grad():
        dist = vae.encode(video.permute(0, 2, 1, 3, 4)).latent_dist
        return (dist.sample(generator=generator) * vae.config.scaling_factor).permute(0, 2, 1, 3, 4)


def image_latents(vae: Any, first_frame: torch.Tensor, latent_frames: int, dropout: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """The I2V condition: the noise-augmented first frame ``(B, C, H, W)`` encoded, scaled, padded
    with zeros to ``latent_frames`` and dropped (all zeros) with probability ``dropout``."""
    b, dev = first_frame.shape[0], first_frame.device
    draw = _draw_device(generator, dev)
    sigma = torch.exp(torch.normal(IMAGE_NOISE_MEAN, IMAGE_NOISE_STD, (b,), generator=generator, device=draw))
    noise = torch.randn(first_frame.shape, generator=generator, device=draw, dtype=first_frame.dtype)
    image = first_frame + noise.to(dev) * sigma.to(dev, first_frame.dtype)[:, None, None, None]
    with torch.no_grad():
        latents = vae.encode(image.unsqueeze(2)).latent_dist.sample(generator=generator)
    scale = vae.config.scaling_factor
    latents = (latents / scale if vae.config.invert_scale_latents else latents * scale).permute(0, 2, 1, 3, 4)
    latents = torch.cat([latents, latents.new_zeros((b, latent_frames - 1, *latents.shape[2:]))], dim=1)
    keep = torch.rand((b,), generator=generator, device=draw) >= dropout
    return latents * keep.to(dev, latents.dtype)[:, None, None, None, None]


def diffusion_loss(module: Any, pipe: Any, scheduler: Any, latents: torch.Tensor, prompt_embeds: torch.Tensor,
                   height: int, width: int, condition: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The recipe's loss of clean ``latents`` ``(B, F, C, h, w)`` through ``module`` (the transformer,
    possibly wrapped); ``condition``: I2V image latents of the same shape, concatenated on channels.
    ``pipe`` supplies the (unwrapped) transformer's config and the rotary embeddings."""
    from diffusers.utils.torch_utils import randn_tensor

    config = pipe.transformer.config
    b, frames = latents.shape[:2]
    dev = latents.device
    noise = randn_tensor(latents.shape, generator=generator, device=dev, dtype=latents.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator,
                              device=_draw_device(generator, dev)).to(dev).long()
    noisy = scheduler.add_noise(latents, noise, timesteps)
    model_input = noisy if condition is None else torch.cat([noisy, condition], dim=2)
    rotary = (pipe._prepare_rotary_positional_embeddings(height, width, frames, dev)
              if config.use_rotary_positional_embeddings else None)
    ofs = latents.new_full((1,), OFS) if config.ofs_embed_dim is not None else None
    output = module(hidden_states=model_input, encoder_hidden_states=prompt_embeds, timestep=timesteps,
                    ofs=ofs, image_rotary_emb=rotary, return_dict=False)[0]
    x0 = scheduler.get_velocity(output, noisy, timesteps)
    weights = 1.0 / (1.0 - scheduler.alphas_cumprod.to(dev, torch.float32)[timesteps])
    error = (x0.float() - latents.float()) ** 2 * weights[:, None, None, None, None]
    return error.reshape(b, -1).mean(dim=1).mean()
