"""Parameters of the ``av`` stage (``stages.av.params`` in ``pipeline.yml``), validated on load.

Defaults were measured on the 16 shared clips with a face (``../shared/data/videos``, dlib's
68-point predictor at 25 fps); the numbers are in ``pipeline.yml``'s comments and in the
docstrings of ``face_signals``, ``audio`` and ``sync``.
"""

from __future__ import annotations

from dataclasses import dataclass

from facevid.udfs.av.landmarks import predictor_file
from facevid.udfs.base import validate

SYNC_BACKENDS = ("correlation", "syncnet")


@dataclass
class AvParams:
    """Landmark rate and model, event thresholds, voice activity and the lip-sync backend."""

    # landmarks
    fps: float = 25.0  # landmark frames per second (a clip with a lower frame rate uses its own)
    landmarks_path: str | None = None  # dlib shape_predictor_68_face_landmarks.dat (None: bundled)
    # occlusion: non-rigid landmark residual between consecutive frames / face size. Measured: p99
    # 0.013-0.032 on the 9 clean single-face clips, p95 0.09-0.10 on the crowd and the dark
    # hamilton shots (tiny or side-view faces)
    jump: float = 0.05
    # eyes: EAR / its rolling median over ear_baseline_s. Blinks on sadtalker_aoc, retalking_face3_aoc
    # and retalking_face4 dip to 0.35-0.6 for 120-280 ms; open-eye jitter stays above 0.8
    ear_baseline_s: float = 2.0
    eye_closed: float = 0.7
    eye_open: float = 0.85
    blink_min_ms: float = 60.0  # >= 2 frames at 25 fps (a one-frame dip is fit noise)
    blink_max_ms: float = 500.0  # longer closures (looking down: retalking_face5 at 0.4-0.8 s) are no blink
    wink_max_ms: float = 1000.0
    # smile: mouth width / outer eye-corner distance. Clip medians of neutral talking faces 0.49-0.66;
    # lp_d19's smiles and the smiling audience of hamilton_short reach 0.72-0.81
    smile_ratio: float = 0.7
    # head movements: hysteresis swings (degrees) of the 5-frame averaged angles, each within
    # swing_max_s. dlib pose jitter: 0.4-1.2 deg per frame on clean clips (2-4 on tiny/dark faces);
    # retalking_face1's two head turns swing 12-15 deg of yaw, lp_d11's head bobbing ~10-20 deg of pitch
    nod_deg: float = 10.0
    shake_deg: float = 10.0
    tilt_deg: float = 8.0
    swing_max_s: float = 1.5
    # audio
    vad_mode: int = 2  # WebRTC VAD aggressiveness 0-3
    # has_speech = speech_frac >= this. Measured speech_frac: 0.0 on the silent tracks (lp_d18, lp_d19,
    # lp_s32: digital silence), 0.60-0.99 on the talking clips
    min_speech_frac: float = 0.2
    # lip sync
    sync: str = "correlation"  # correlation | syncnet
    max_offset_frames: int = 15  # offsets searched: +-this many landmark frames (+-600 ms at 25 fps)
    sync_window_s: float = 2.0  # correlation: windows whose curves are averaged (1.5 and 3 s did worse)
    min_sync_frames: int = 25  # fewer landmark frames with speech and a fit: null offset
    # correlation: null curves per kind (envelope circularly shifted; time-reversed) for av_sync_z
    sync_null_curves: int = 24
    # av_sync_reliable = has_speech, av_sync_z >= this and the peak inside the search range. Measured
    # (udfs/av/sync.py): 90 pairs of a talking clip's mouth with another clip's audio (talking clips,
    # the crowd and hamilton's shots) reach z <= 3.42 (retalking_face1 with hamilton's audio; 1 of 90
    # above 3.0); true pairs 3.8-4.4 only on lp_d20, -0.8..2.3 on the others
    sync_min_z: float = 3.5
    syncnet_path: str | None = None  # SyncNet weights (local, s3://, dbfs:/); required for sync: syncnet
    syncnet_batch: int = 64  # SyncNet windows per forward pass
    face_crop_scale: float = 1.4  # SyncNet face crops: square of this x the face box's longer side
    device: str = "auto"  # auto | cpu | cuda (the SyncNet backend; correlation runs on numpy)

    def __post_init__(self) -> None:
        validate("av", [
            (self.fps > 0, f"fps must be > 0, got {self.fps}"),
            (self.landmarks_path is None or predictor_file(self.landmarks_path) is not None,
             f"landmarks_path {self.landmarks_path} does not exist"),
            (self.jump > 0, f"jump must be > 0, got {self.jump}"),
            (self.ear_baseline_s > 0, f"ear_baseline_s must be > 0, got {self.ear_baseline_s}"),
            (0 < self.eye_closed < self.eye_open, f"need 0 < eye_closed < eye_open, got {self.eye_closed}, "
             f"{self.eye_open}"),
            (0 <= self.blink_min_ms <= self.blink_max_ms <= self.wink_max_ms,
             "need 0 <= blink_min_ms <= blink_max_ms <= wink_max_ms"),
            (self.smile_ratio > 0, f"smile_ratio must be > 0, got {self.smile_ratio}"),
            (min(self.nod_deg, self.shake_deg, self.tilt_deg) > 0, "nod_deg, shake_deg, tilt_deg must be > 0"),
            (self.swing_max_s > 0, f"swing_max_s must be > 0, got {self.swing_max_s}"),
            (self.vad_mode in (0, 1, 2, 3), f"vad_mode must be 0, 1, 2 or 3, got {self.vad_mode}"),
            (0 <= self.min_speech_frac <= 1, f"min_speech_frac must be in [0, 1], got {self.min_speech_frac}"),
            (self.sync in SYNC_BACKENDS, f"sync must be one of {SYNC_BACKENDS}, got {self.sync!r}"),
            (self.max_offset_frames >= 1, f"max_offset_frames must be >= 1, got {self.max_offset_frames}"),
            (self.sync_window_s > 0, f"sync_window_s must be > 0, got {self.sync_window_s}"),
            (self.min_sync_frames >= 2, f"min_sync_frames must be >= 2, got {self.min_sync_frames}"),
            (self.sync_null_curves >= 8, f"sync_null_curves must be >= 8, got {self.sync_null_curves}"),
            (self.sync != "syncnet" or bool(self.syncnet_path), "syncnet_path is required for sync: syncnet"),
            (self.syncnet_batch >= 1, f"syncnet_batch must be >= 1, got {self.syncnet_batch}"),
            (self.face_crop_scale >= 1, f"face_crop_scale must be >= 1, got {self.face_crop_scale}"),
            (self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}"),
        ])
