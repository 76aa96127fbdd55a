"""Caption backends behind one batch contract: ``prepare(row)`` on CPU ahead of the model,
``infer(items)`` one result per item (errors as data rows, so one bad answer never re-runs a batch).

- ``vlm``: frames sampled from the crop (first + ``frames_random`` seeded non-consecutive ones), the
  template prompt with the vocabulary's options, batched left-padded ``generate`` of an
  image-text-to-text model from ``model_path``, the answer parsed into vocabulary terms;
- ``signals``: the honest CPU default (``facevid.udfs.annotate.signals``) over ``silver.av`` and
  ``silver.quality``, plus an emotion from an ONNX classifier when one is configured.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from facevid.udfs.annotate.parser import parse_answer
from facevid.udfs.annotate.prompt import render_prompt
from facevid.udfs.annotate.sentence import compose_caption
from facevid.udfs.annotate.signals import SignalThresholds, signals_answer
from facevid.udfs.annotate.vocabulary import Vocabulary, load_vocabulary
from facevid.udfs.base import StageError, validate
from facevid.udfs.errors import classify
from facevid.udfs.models.emotion import FER_PLUS_LABELS, EmotionClassifier, EmotionSettings
from facevid.udfs.models.runtime import weights_hash

CAPTION_COLUMNS: dict[str, str] = {
    "ethnicity": "string", "appearance": "array<string>", "lighting": "array<string>",
    "action": "array<string>", "emotion": "string",
    "caption": "string",  # one natural sentence (CelebV-Text style)
    "oov": "array<string>",  # "<attribute>: <term>" answered outside the vocabulary (never dropped)
    "raw_answer": "string",  # the model's text (vlm) or the measured evidence as JSON (signals)
    "parse_method": "string",  # json | json_repaired | text | signals
    "backend": "string", "model": "string",  # model: name @ weights hash
    "prompt_version": "string", "vocabulary_version": "string",
    "frames": "array<double>",  # crop times (s) of the frames shown / classified
    "caption_ms": "double",
}
BACKENDS = ("signals", "vlm")


@dataclass
class CaptionParams:
    """Which backend, its model settings, the vocabulary and prompt files, the parser cut-off."""

    backend: str = "signals"
    vocabulary_path: str | None = None  # None: the packaged DH-FaceVid-1K vocabulary
    prompt_path: str | None = None  # None: the packaged template (prompt_v1.txt)
    fuzzy_cutoff: float = 0.88
    # vlm
    model_path: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "sdpa"
    max_new_tokens: int = 256
    frames_random: int = 3
    frame_side: int = 336
    seed: int = 7
    forced_answer: str | None = None  # wiring tests / dry runs: generation constrained to this text
    # signals
    emotion_model_path: str | None = None
    emotion_labels: list[str] = field(default_factory=lambda: list(FER_PLUS_LABELS))
    thresholds: Any = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.thresholds, SignalThresholds):
            self.thresholds = SignalThresholds(**(self.thresholds or {}))
        validate("caption", [
            (self.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"),
            (self.backend != "vlm" or bool(self.model_path),
             "model_path: the vlm backend needs a model folder (local, s3:// or dbfs:/; see README Annotations)"),
            (0 < self.fuzzy_cutoff <= 1, "fuzzy_cutoff must be in (0, 1]"),
            (self.max_new_tokens >= 8, "max_new_tokens must be >= 8"),
            (self.frames_random >= 0 and self.frame_side >= 32, "frames_random >= 0 and frame_side >= 32"),
        ])

    def vocabulary(self) -> Vocabulary:
        return load_vocabulary(self.vocabulary_path)

    def content_state(self) -> dict[str, str]:
        """What the vocabulary and prompt files hold (part of the stage fingerprint)."""
        vocab = self.vocabulary()
        state = {"vocabulary": vocab.version}
        if self.backend == "vlm":
            state["prompt"] = render_prompt(vocab, self.prompt_path).version
        return state


def finish(values: dict[str, Any], oov: list[str], vocab: Vocabulary, caption: str | None) -> dict[str, Any]:
    """Output columns from structured values (arrays stay arrays; a missing sentence is composed)."""
    return {"ethnicity": values.get("ethnicity"), "appearance": list(values.get("appearance") or []),
            "lighting": list(values.get("lighting") or []), "action": list(values.get("action") or []),
            "emotion": values.get("emotion"), "caption": caption or compose_caption(values, vocab),
            "oov": list(oov), "vocabulary_version": vocab.version}


class SignalsCaptioner:
    """The CPU default: measured signals -> vocabulary terms; emotion only with a classifier."""

    backend = "signals"

    def __init__(self, params: CaptionParams) -> None:
        self.params, self.vocab = params, params.vocabulary()
        self.emotion = None
        name = "signals"
        if params.emotion_model_path:
            self.emotion = EmotionClassifier(EmotionSettings(params.emotion_model_path, tuple(params.emotion_labels)))
            name += f"+emotion@{weights_hash(params.emotion_model_path)}"
        self.model = name + "#" + hashlib.sha256(json.dumps(asdict(params.thresholds), sort_keys=True)
                                                 .encode()).hexdigest()[:8]

    def infer(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for item in items:
            t0 = time.perf_counter()
            emotion, scores = (self.emotion.classify(item["frames"]) if self.emotion is not None else (None, None))
            values, raw = signals_answer(item["row"], self.params.thresholds, emotion, scores)
            out.append({**finish(values, [], self.vocab, None), "raw_answer": raw, "parse_method": "signals",
                        "backend": self.backend, "model": self.model, "prompt_version": None,
                        "frames": item["times"], "caption_ms": (time.perf_counter() - t0) * 1000})
        return out


class VlmBackend:
    """A VLM from ``model_path``: frames from the crop, the template prompt, parsed JSON answers."""

    backend = "vlm"

    def __init__(self, params: CaptionParams, device: str) -> None:
        from facevid.udfs.annotate.vlm import VlmCaptioner

        self.params, self.vocab = params, params.vocabulary()
        self.prompt = render_prompt(self.vocab, params.prompt_path)
        self.captioner = VlmCaptioner.load(vlm_settings(params, device))
        self.model = f"{self.captioner.name}@{self.captioner.weights_hash}"

    def infer(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        force = self.params.forced_answer
        answers = self.captioner.generate([(it["frames"], self.prompt.text, it["times"]) for it in items],
                                          forced_answer=force)
        each_ms = (time.perf_counter() - t0) * 1000 / max(1, len(items))
        out = []
        for item, answer in zip(items, answers, strict=True):
            common = {"raw_answer": answer, "backend": self.backend, "model": self.model,
                      "prompt_version": self.prompt.version, "frames": item["times"], "caption_ms": each_ms}
            try:
                parsed = parse_answer(answer, self.vocab, self.params.fuzzy_cutoff)
            except StageError as exc:  # a data row, not a batch retry (the answer is the evidence)
                err = classify(exc)
                out.append({**common, "error": err.text, "error_kind": err.kind})
                continue
            out.append({**finish(parsed.values, parsed.oov, self.vocab, parsed.caption), **common,
                        "parse_method": parsed.method})
        return out


def prepare_item(row: dict[str, Any], params: CaptionParams) -> dict[str, Any]:
    """CPU work ahead of the model: the crop's frames when the backend looks at pixels (vlm, or
    signals with an emotion classifier), sampled as the review protocol does (first + seeded random)."""
    if params.backend == "signals" and not params.emotion_model_path:
        return {"row": row, "frames": [], "times": None}
    from facevid.udfs.annotate.frames import sample_frames

    frames, times = sample_frames(row["crop_uri"], params.frames_random, params.seed, params.frame_side,
                                  key=row["clip_id"])
    if not frames:
        raise StageError("decode", f"no frame decoded from {row['crop_uri']}")
    return {"row": row, "frames": frames, "times": times}


def vlm_settings(params: CaptionParams, device: str) -> Any:
    from facevid.udfs.annotate.vlm import VlmSettings

    return VlmSettings(model_path=params.model_path, device=device, dtype=params.dtype,
                       attn_implementation=params.attn_implementation, max_new_tokens=params.max_new_tokens,
                       frame_side=params.frame_side)


def load_backend(params: CaptionParams, device: str) -> SignalsCaptioner | VlmBackend:
    return VlmBackend(params, device) if params.backend == "vlm" else SignalsCaptioner(params)


def backend_key(params: CaptionParams, device: str) -> tuple:
    """One backend object per executor process and configuration: the model's identity plus every
    parameter the object keeps (a run with another forced answer or cut-off gets its own)."""
    state = json.dumps(asdict(params), sort_keys=True, default=str)
    if params.backend == "vlm":
        from facevid.udfs.annotate.vlm import model_key

        return (*model_key(vlm_settings(params, device)), state)
    return ("caption.signals", device, state)
