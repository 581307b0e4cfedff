"""What the preview page shows, and the events that change it, fanned out to every connected page.

The state is kept so that a page opened late (or reconnecting) starts from a snapshot; each change is then one
server-sent event that the page applies the same way (see page.html). Thread-safe: the encoder thread publishes,
the server's threads subscribe.
"""

from __future__ import annotations

import copy
import queue
import threading
from pathlib import Path
from typing import Optional

__all__ = ["LiveState"]

CLIENT_BACKLOG = 64  # events a page may fall behind by before it is dropped (it reconnects to a fresh snapshot)


class LiveState:
    """kind (generate, batch, animate), title, status, the images in flight (slots), the finished ones, progress."""

    def __init__(self, kind: str, title: str, root: Optional[Path] = None):
        self.root = Path(root) if root is not None else None  # the only folder the server reads files from
        self.data = {
            "kind": kind,
            "title": title,
            "status": "running",
            "slots": [],
            "finished": [],
            "progress": {"seen": 0, "expected": 0},
            "eta": None,
            "elapsed": 0.0,
        }
        self._clients: set[queue.Queue] = set()
        self._lock = threading.Lock()

    def snapshot(self) -> dict:
        with self._lock:
            return copy.deepcopy(self.data)

    def subscribe(self) -> tuple[dict, queue.Queue]:
        """The current state and a queue of the events after it (None once the run has ended)."""
        q: queue.Queue = queue.Queue(CLIENT_BACKLOG)
        with self._lock:
            if self.data["status"] == "running":
                self._clients.add(q)
            else:
                q.put(None)
            return copy.deepcopy(self.data), q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            self._clients.discard(q)

    def publish(self, event: str, data: dict) -> None:
        """Apply one event to the state and send it to every page; a page too far behind is dropped."""
        with self._lock:
            self._apply(event, data)
            for q in list(self._clients):
                try:
                    q.put_nowait((event, data))
                except queue.Full:
                    self._clients.discard(q)
                    _close(q)

    def close(self, status: str) -> None:
        """The run ended: tell every page, then end their streams."""
        self.publish("end", {"status": status})
        with self._lock:
            clients, self._clients = self._clients, set()
        for q in clients:
            _close(q)

    def _apply(self, event: str, data: dict) -> None:
        d, slots = self.data, self.data["slots"]
        if event == "begin":
            d["slots"] = copy.deepcopy(data["slots"])
        elif event == "loss":
            for i, values in data["points"]:
                for slot, value in zip(slots, values):
                    slot["loss"].append([i, value])
        elif event in ("frame", "finished"):
            if "progress" in data:
                d["progress"], d["eta"], d["elapsed"] = data["progress"], data["eta"], data["elapsed"]
            if data["slot"] < len(slots):
                slots[data["slot"]].update({k: data[k] for k in ("step", "image", "active", "status") if k in data})
            if event == "finished":
                d["finished"].append(data["record"])
        elif event == "end":
            d["status"] = data["status"]
            d["eta"] = None


def _close(q: queue.Queue) -> None:
    """Make room for the end-of-stream marker even in a full queue."""
    while True:
        try:
            q.put_nowait(None)
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass
