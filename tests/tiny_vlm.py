"""Tiny random-weight VLMs of each supported family, built offline and saved as a model folder.

Each builder writes what a real checkpoint folder holds (``config.json``, safetensors weights,
tokenizer, image/video processor and chat template) so that ``VlmCaptioner.load`` reads it with
the same ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained`` calls it uses on real
weights. The tokenizer is the only part a hub download would normally give: a byte-level BPE of
~512 tokens is trained here on the option words, with the family's special tokens and a chat
template in the real model's format. Models are ~0.2 M parameters (seconds to build, ~1 MB).

``canned_answer_fn`` forces a given answer through the real ``generate`` (random weights only
produce garbage): every row, left-padded or not, may only continue the answer's tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from facevid.udfs.models.torch_compat import import_torchvision

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "llava_onevision")  # the captioner's own paths
GENERIC_FAMILY = "qwen2_vl"  # built too: a model type the captioner takes through its generic path
INIT = 0.2  # weight std: large enough that different clips give different greedy answers
CORPUS = [
    '{"ethnicity": "Asian", "appearance": ["Eyeglasses", "Smile"], "lighting": ["Bright"],'
    ' "action": ["Talk", "Nod"], "emotion": "Happy", "caption": "A young woman talks and nods."}',
    "White Black Latino Indian Middle Eastern Male Female Young Old Beard No beard Wavy hair",
    "Soft Dim Harsh Natural Backlit Talk Speak Smile Close eyes Wink Shake head Tilt Wag head",
    "Neutral Happy Sad Angry Surprised Fearful Disgusted Contempt. The man looks at the camera.",
    "system user assistant You are a helpful assistant. Describe the person in the video as JSON.",
]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
LLAVA_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

# The real checkpoints' chat templates (Qwen2.5-VL's chat_template.json; Qwen3-VL's vision part,
# no tools/thinking; llava-onevision-qwen2-*-ov-hf's), trimmed of nothing that changes the prompt.
QWEN25_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN3_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


def tiny_tokenizer(specials: list[str], vocab_size: int = 512) -> Any:
    """A byte-level BPE trained on ``CORPUS`` with ``specials``, left padding, ``<|im_end|>`` as EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   padding_side="left", extra_special_tokens=specials[3:])


def _ids(tokenizer: Any, *tokens: str) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]


def _text(tokenizer: Any, **over: Any) -> dict[str, Any]:
    """A 2-layer decoder (hidden 32, 2 heads of 16, 1 KV head)."""
    pad, eos = _ids(tokenizer, "<|endoftext|>", "<|im_end|>")
    return {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 4096,
            "pad_token_id": pad, "bos_token_id": pad, "eos_token_id": eos, "initializer_range": INIT, **over}


def _qwen25(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    image, video, start, end = _ids(tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    config = Qwen2_5_VLConfig(
        text_config=_text(tokenizer, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                      "mrope_section": [2, 3, 3]}),  # sums to head_dim/2
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56, "out_hidden_size": 32,
                       "fullatt_block_indexes": [1], "initializer_range": INIT},
        image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
                                    tokenizer=tokenizer, chat_template=QWEN25_TEMPLATE)
    return Qwen2_5_VLForConditionalGeneration(config), processor


def _qwen3(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    image, video, start, end = _ids(tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    config = Qwen3VLConfig(
        text_config=_text(tokenizer, head_dim=16, rope_parameters={
            "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True}),
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 16,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 32,
                       "num_position_embeddings": 64, "deepstack_visual_indexes": [1], "initializer_range": INIT},
        image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(patch_size=16),
                                 video_processor=Qwen3VLVideoProcessor(), tokenizer=tokenizer,
                                 chat_template=QWEN3_TEMPLATE)
    return Qwen3VLForConditionalGeneration(config), processor


def _llava(tokenizer: Any) -> tuple[Any, Any]:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    side, patch = 32, 8
    image, video = _ids(tokenizer, "<image>", "<video>")
    config = LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **_text(tokenizer)},
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": side, "patch_size": patch},
        image_token_index=image, video_token_index=video, vision_feature_layer=-1,
        vision_feature_select_strategy="full", image_grid_pinpoints=[[side, side], [side, 2 * side], [2 * side, side]])
    size = {"height": side, "width": side}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=config.image_grid_pinpoints),
        video_processor=LlavaOnevisionVideoProcessor(size=size), tokenizer=tokenizer,
        num_image_tokens=(side // patch) ** 2, vision_feature_select_strategy="full", chat_template=LLAVA_TEMPLATE)
    return LlavaOnevisionForConditionalGeneration(config), processor


def _qwen2(tokenizer: Any) -> tuple[Any, Any]:
    """Qwen2-VL: a family without its own path in the captioner (the generic one takes it)."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    image, video, start, end = _ids(tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    config = Qwen2VLConfig(
        text_config=_text(tokenizer, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                      "mrope_section": [2, 3, 3]}),
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 32, "mlp_ratio": 2, "num_heads": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "initializer_range": INIT},
        image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
                                 tokenizer=tokenizer, chat_template=QWEN25_TEMPLATE)
    return Qwen2VLForConditionalGeneration(config), processor


_BUILDERS: dict[str, tuple[list[str], Callable[[Any], tuple[Any, Any]]]] = {
    "qwen2_5_vl": (QWEN_SPECIALS, _qwen25), "qwen3_vl": (QWEN_SPECIALS, _qwen3),
    "llava_onevision": (LLAVA_SPECIALS, _llava), "qwen2_vl": (QWEN_SPECIALS, _qwen2)}


def build_tiny_vlm(family: str, folder: Path, seed: int = 0) -> Path:
    """Build the tiny ``family`` model with random weights (seeded) and save it to ``folder``."""
    import torch

    import_torchvision()
    specials, build = _BUILDERS[family]
    torch.manual_seed(seed)
    model, processor = build(tiny_tokenizer(specials))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def qwen2_5_vl_7b(tokenizer: Any) -> Any:
    """Qwen2.5-VL-7B-Instruct's architecture (its config.json: 28 layers of 3584, 4 KV heads, a
    32-block 1280-wide ViT) with the special token ids of ``tokenizer``; throughput does not
    depend on the weights, so random ones measure it."""
    from transformers import Qwen2_5_VLConfig

    image, video, start, end, pad, eos = _ids(tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                              "<|vision_end|>", "<|endoftext|>", "<|im_end|>")
    return Qwen2_5_VLConfig(
        text_config={"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                     "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000,
                     "rms_norm_eps": 1e-6, "pad_token_id": pad, "bos_token_id": pad, "eos_token_id": eos,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}},
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112, "out_hidden_size": 3584,
                       "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2},
        image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)


def real_size_captioner(settings: Any) -> Any:
    """A ``VlmCaptioner`` around a random-weight Qwen2.5-VL-7B built in place on ``settings.device``
    (no 16 GB checkpoint written and read back), with the tiny Qwen2.5-VL processor (the real
    processor classes and defaults; only the tokenizer is small)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from facevid.udfs.annotate.vlm import VlmCaptioner, torch_dtype
    from facevid.udfs.models.runtime import resolve_device

    import_torchvision()
    _, processor = _qwen25(tiny_tokenizer(QWEN_SPECIALS))
    device = resolve_device(settings.device)
    config = qwen2_5_vl_7b(processor.tokenizer)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=torch_dtype(settings.dtype, device), attn_implementation=settings.attn_implementation)
    captioner = VlmCaptioner(model.eval(), processor, settings, "qwen2_5_vl", device, Path("."))
    captioner._hash = "random-weights"  # nothing on disk to hash
    return captioner


@pytest.fixture(scope="session")
def tiny_vlms(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_vlms(family)``: the folder of that family's tiny model, built on first use (once per
    session). Sets torch to one thread (2 threads on a loaded 2-core box swung generate 100x)."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_vlm")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_vlm(family, root / family)
        return built[family]

    return get


def canned_answer_fn(processor: Any, text: str) -> Callable[[int, Any], list[int]]:
    """A ``prefix_allowed_tokens_fn`` that forces ``text`` (then EOS) in every batch row.

    ``generate`` passes the full row (prompt, left padding included); the row's new tokens are
    those after the ``<|im_start|>assistant\\n`` marker that ends every generation prompt here, so
    the position in the answer is known whatever the padding."""
    tokenizer = getattr(processor, "tokenizer", processor)
    answer = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    marker = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)

    def allowed(batch_id: int, input_ids: Any) -> list[int]:
        ids = input_ids.tolist()
        for start in range(len(ids) - len(marker), -1, -1):
            if ids[start:start + len(marker)] == marker:
                done = len(ids) - start - len(marker)
                return [answer[min(done, len(answer) - 1)]]
        return [tokenizer.eos_token_id]

    return allowed
