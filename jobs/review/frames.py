"""The frames a review task shows, as JPEGs: decoded with the one decode helper
(``facevid.udfs.media.video.iter_frames``) from a local or ``s3://`` file, and kept in a small
LRU cache so the reviewer's next look (or a reload) costs nothing."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import cv2

from facevid.udfs.media.storage import local_path
from facevid.udfs.media.video import iter_frames


def decode_jpegs(uri: str, indices: Iterable[int], max_side: int = 512, quality: int = 90) -> dict[int, bytes]:
    """JPEG bytes of the frames numbered ``indices`` (0 = first frame) of a video, in one decoding
    pass that stops after the last one; frames past the end are missing from the result."""
    wanted = sorted({int(i) for i in indices if int(i) >= 0})
    out: dict[int, bytes] = {}
    if not wanted:
        return out
    with local_path(uri) as path:
        for n, (_, img) in enumerate(iter_frames(path, max_side=max_side)):
            if n in wanted:
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
                if ok:
                    out[n] = buf.tobytes()
            if n >= wanted[-1]:
                break
    return out


class FrameCache:
    """``(uri, frame number) -> JPEG`` with least-recently-used eviction (thread-safe)."""

    def __init__(self, max_items: int = 256, max_side: int = 512) -> None:
        self.max_items, self.max_side = max_items, max_side
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._mu = threading.Lock()

    def get(self, uri: str, index: int, batch: Iterable[int] = ()) -> bytes | None:
        """The JPEG of frame ``index`` of ``uri`` (None when the file has no such frame); on a miss the
        other frames in ``batch`` (the task's) are decoded in the same pass."""
        with self._mu:
            if (uri, index) in self._items:
                self._items.move_to_end((uri, index))
                return self._items[(uri, index)]
        decoded = decode_jpegs(uri, {index, *batch}, self.max_side)
        with self._mu:
            for n, jpeg in decoded.items():
                self._items[(uri, n)] = jpeg
                self._items.move_to_end((uri, n))
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return decoded.get(index)
