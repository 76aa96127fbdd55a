"""Task leases: a task is shown to one browser session at a time, across page servers on one lake.

A lease is ``<files root>/_leases/review-<sha1(task_id)[:16]>.json`` in the stages' lease store
(compare-and-swap: ``flock`` on local disk, conditional PUT on S3). It names the page server (its
run id, host, pid and pid start time), the browser session holding it (``holder``) and the
reviewer, and expires ``ttl_s`` after it was last taken or renewed. The page renews it while the
reviewer works (a ping every minute) and releases it on submit or skip. A lease is free when it
was released or has expired (an abandoned browser), or at once when its page server was a
process on this host that is gone (a killed server restarted: its tasks are served again).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from facevid.jobs.lease import holder_gone, identity, lease_store

TTL_S = 600.0


def lease_name(task_id: str) -> str:
    """The lease file name of a task (task ids hold ``:`` and whatever a clip id holds)."""
    return f"review-{hashlib.sha1(task_id.encode()).hexdigest()[:16]}"


class TaskLeases:
    """Take, renew and release task leases for the browser sessions of one page server."""

    def __init__(self, files_root: str, server_id: str, ttl_s: float = TTL_S) -> None:
        self.store = lease_store(files_root)
        self.me = identity(server_id, "review")
        self.ttl_s = ttl_s

    def _mine(self, content: dict[str, Any], holder: str) -> bool:
        return content.get("holder") == holder and content.get("run_id") == self.me["run_id"]

    @staticmethod
    def _free(content: dict[str, Any]) -> bool:
        return bool(content.get("released")) or content.get("expires_at", 0) < time.time() or holder_gone(content)

    def take(self, task_id: str, holder: str, reviewer: str) -> bool:
        """Take the task's lease for ``holder`` (or renew it when it already holds it); False when
        another live session holds it."""
        name = lease_name(task_id)
        for _ in range(5):  # another server swapped between our read and our swap: look again
            cur = self.store.read(name)
            if cur is not None and not (self._mine(cur.content, holder) or self._free(cur.content)):
                return False
            now = time.time()
            content = {**self.me, "table": name, "task_id": task_id, "holder": holder, "reviewer": reviewer,
                       "expires_at": now + self.ttl_s, "renewed_at": now}
            if self.store.swap(name, content, None if cur is None else cur.token) is not None:
                return True
        return False

    def release(self, task_id: str, holder: str) -> None:
        """Give the task's lease back (only when ``holder`` still holds it)."""
        name = lease_name(task_id)
        cur = self.store.read(name)
        if cur is not None and self._mine(cur.content, holder) and not cur.content.get("released"):
            self.store.swap(name, {**cur.content, "expires_at": 0, "released": True}, cur.token)

    def holder(self, task_id: str) -> dict[str, Any] | None:
        """The live lease on a task (its content), or None when it is free."""
        cur = self.store.read(lease_name(task_id))
        return None if cur is None or self._free(cur.content) else cur.content
