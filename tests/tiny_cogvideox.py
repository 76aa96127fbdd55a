"""Tiny random-weight CogVideoX pipelines (T2V and I2V) built offline and saved as pipeline folders,
plus a CogVideoX-2B-sized pipeline (random weights, no text encoder) for GPU timing.

The tiny folders hold what a real checkpoint folder holds (``model_index.json``, ``transformer/``,
``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``) so that the backend reads them with the
same ``from_pretrained`` calls it uses on real weights. Sizes (measured in the offline spike): a
transformer of 2 layers x 2 heads x 16 on an 8x8 latent grid (64x64 pixels, 9 frames = 3 latent
frames), a 4-block VAE of 8 channels (8x spatial, 4x temporal, 4 latent channels), a T5 encoder of
d_model 32 and a T5 tokenizer from a Unigram vocabulary trained here. The I2V transformer takes 8
input channels (video + image latents) with rotary and learned positional embeddings, as
CogVideoX-5b-I2V. The scheduler is the real checkpoints' CogVideoXDDIMScheduler configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from facevid.udfs.models.torch_compat import import_torchvision

CAPTIONS = [
    "A young woman talks to the camera and smiles.", "A man in a suit speaks in a bright room.",
    "An old man nods and looks at the camera.", "A person with eyeglasses talks calmly.",
    "A woman with wavy hair speaks in soft light.", "A bearded man tilts his head and talks.",
]
# THUDM/CogVideoX-2b scheduler/scheduler_config.json (snr_shift_scale 1.0 for the 5b models).
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                 num_train_timesteps=1000, prediction_type="v_prediction", rescale_betas_zero_snr=True,
                 set_alpha_to_one=True, snr_shift_scale=3.0, steps_offset=0, timestep_spacing="trailing")
# THUDM/CogVideoX-2b transformer/config.json; diffusers' scripts/convert_cogvideox_to_diffusers.py
# L199-210 (1.0: patch 2, sample 60x90x49) and L249-256 ("For CogVideoX-2B, num_layers is 30 ...
# num_attention_heads is 30 ... use_rotary_positional_embeddings is False").
COGVIDEOX_2B = dict(num_attention_heads=30, attention_head_dim=64, in_channels=16, out_channels=16,
                    flip_sin_to_cos=True, freq_shift=0, time_embed_dim=512, text_embed_dim=4096, num_layers=30,
                    dropout=0.0, attention_bias=True, sample_width=90, sample_height=60, sample_frames=49,
                    patch_size=2, temporal_compression_ratio=4, max_text_seq_length=226,
                    activation_fn="gelu-approximate", timestep_activation_fn="silu", norm_elementwise_affine=True,
                    norm_eps=1e-5, spatial_interpolation_scale=1.875, temporal_interpolation_scale=1.0,
                    use_rotary_positional_embeddings=False, use_learned_positional_embeddings=False)


def tiny_tokenizer() -> Any:
    """A T5 tokenizer over a Unigram vocabulary trained on ``CAPTIONS`` (pad 0, eos 1, unk 2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=128, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(CAPTIONS * 4, trainer)
    return T5Tokenizer(vocab=[tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]])


def tiny_vae() -> Any:
    from diffusers import AutoencoderKLCogVideoX

    return AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8,) * 4, latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)


def build_tiny_pipeline(mode: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random-weight CogVideoX pipeline of ``mode`` (t2v | i2v) into ``folder``."""
    import_torchvision()
    import torch
    from diffusers import (
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    i2v = mode == "i2v"
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8 if i2v else 4, out_channels=4,
        time_embed_dim=32, text_embed_dim=32, num_layers=2, sample_width=8, sample_height=8, sample_frames=9,
        patch_size=2, temporal_compression_ratio=4, max_text_seq_length=226,
        use_rotary_positional_embeddings=i2v, use_learned_positional_embeddings=i2v)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                           num_heads=4))
    cls = CogVideoXImageToVideoPipeline if i2v else CogVideoXPipeline
    pipe = cls(tokenizer=tokenizer, text_encoder=text_encoder, vae=tiny_vae(), transformer=transformer,
               scheduler=CogVideoXDDIMScheduler(**SCHEDULER))
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_cogvideox(tmp_path_factory):
    """``tiny_cogvideox(mode)`` -> the folder of a tiny CogVideoX pipeline (built once per session)."""
    root = tmp_path_factory.mktemp("tiny_cogvideox")
    built: dict[str, Path] = {}

    def get(mode: str) -> Path:
        if mode not in built:
            built[mode] = build_tiny_pipeline(mode, root / mode)
        return built[mode]

    return get


def real_size_pipeline(device: str, dtype: Any) -> Any:
    """A CogVideoX-2B-sized T2V pipeline with random weights built on ``device``: the real 2B
    transformer config, the real VAE config (the class defaults), no tokenizer or T5 (feed
    ``prompt_embeds`` of shape (B, 226, 4096) instead)."""
    import_torchvision()
    import torch
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    with torch.device(device):
        transformer = CogVideoXTransformer3DModel(**COGVIDEOX_2B).to(dtype)
        vae = AutoencoderKLCogVideoX().to(dtype)
    return CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer,
                             scheduler=CogVideoXDDIMScheduler(**SCHEDULER))
