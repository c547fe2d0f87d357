"""A broker stand-in for the reconciler: it keeps what would be published to the
follow-up queue, and says how long that queue is."""

from __future__ import annotations

import uuid


class FollowUps:
    def __init__(self, follow_up_waiting: int = 0) -> None:
        self.extras: list[uuid.UUID] = []
        self.refreshed: list[uuid.UUID] = []
        self.waiting = follow_up_waiting

    def enqueue(self, task_id: uuid.UUID, priority: int = 0) -> None:
        raise AssertionError("no render is lost here")

    def ping(self) -> None:
        pass

    def depth(self) -> int:
        return 0

    def enqueue_extras(self, task_id: uuid.UUID) -> None:
        self.extras.append(task_id)

    def enqueue_refresh(self, task_id: uuid.UUID) -> None:
        self.refreshed.append(task_id)

    def follow_up_depth(self) -> int:
        return self.waiting
