"""facevid.udfs.face.tracking with synthetic boxes: association, gaps, crossing, main track and smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from facevid.udfs.face.tracking import (
    Track,
    iou_matrix,
    main_track,
    moving_average,
    smooth_track,
    track_faces,
)
from facevid.udfs.models.detectors import Detections, empty_detections


def dets(*boxes: list[float]) -> Detections:
    if not boxes:
        return empty_detections()
    b = np.array(boxes, np.float32)
    return b, np.full(len(b), 0.99, np.float32), np.tile(b[:, :2], 5)


def test_iou_matrix() -> None:
    iou = iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]]))
    assert iou.shape == (1, 3)
    assert iou[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0])


def test_parallel_tracks_with_short_gap() -> None:
    samples = []
    for k in range(10):
        a = [10 + 2 * k, 10, 40, 40]
        b = [200 + 2 * k, 10, 40, 40]
        samples.append(dets(a) if k in (4, 5) else dets(a, b))  # b missed for 2 samples
    tracks = track_faces(samples, iou_threshold=0.3, max_gap=2)
    assert len(tracks) == 2
    assert tracks[0].idx == list(range(10))
    assert tracks[1].idx == [0, 1, 2, 3, 6, 7, 8, 9]
    assert all(box[0] >= 200 for box in tracks[1].boxes)


def test_gap_longer_than_max_gap_starts_a_new_track() -> None:
    samples = [dets([10, 10, 40, 40]) if k not in (3, 4, 5) else dets() for k in range(8)]
    tracks = track_faces(samples, max_gap=2)
    assert [t.idx for t in tracks] == [[0, 1, 2], [6, 7]]


def test_crossing_tracks_keep_their_identity() -> None:
    # both faces are missed where they overlap: the last boxes alone would swap identities,
    # the constant-velocity prediction keeps them
    samples = [
        dets() if k == 10 else dets([20 + 12 * k, 100, 40, 40], [260 - 12 * k, 115, 40, 40])
        for k in range(21)
    ]
    tracks = track_faces(samples, iou_threshold=0.3, max_gap=2)
    assert len(tracks) == 2
    for track, direction in zip(tracks, (1, -1), strict=True):
        assert track.idx == [k for k in range(21) if k != 10]
        xs = np.array([b[0] for b in track.boxes])
        assert np.all(np.diff(xs) * direction > 0)


def test_unrelated_boxes_are_not_linked() -> None:
    samples = [dets([10, 10, 40, 40]), dets([300, 300, 40, 40])]
    assert len(track_faces(samples)) == 2


def test_main_track_most_detections_then_area() -> None:
    def track(n: int, size: float) -> Track:
        t = Track()
        for k in range(n):
            t.add(k, np.array([0, 0, size, size]), 0.9, None)
        return t

    small_long, big_short, big_long = track(5, 10), track(3, 50), track(5, 20)
    assert main_track([small_long, big_short]) is small_long
    assert main_track([small_long, big_long]) is big_long
    assert main_track([]) is None


def test_smoothing_interpolates_gaps_and_holds_edges() -> None:
    t = Track()
    for k in (2, 3, 6, 7):
        t.add(k, np.array([10.0 * k, 0, 20, 20]), 0.9, None)
    raw = smooth_track(t, 10, window=1)
    assert raw[:, 0].tolist() == [20, 20, 20, 30, 40, 50, 60, 70, 70, 70]
    smooth = smooth_track(t, 10, window=3)
    assert smooth.shape == (10, 4)
    assert smooth[3:7, 0].tolist() == pytest.approx([30, 40, 50, 60])  # linear stays linear
    assert np.all(smooth[:, 2] == 20)


def test_moving_average_short_input_and_jitter() -> None:
    assert moving_average(np.array([[1.0], [3.0]]), 5)[:, 0].tolist() == [2.0, 2.0]
    jitter = np.array([[0.0], [10.0]] * 5)
    assert np.ptp(moving_average(jitter, 5)[2:-2]) < np.ptp(jitter) / 2
