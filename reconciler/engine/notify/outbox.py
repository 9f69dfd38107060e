"""The outbox in the state file: events added after a pass, and taken out once delivered.

Each change is a short read-modify-write under the state lock, never holding it across a send.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.engine.notify.detect import detect, settled
from reconciler.specs.models import NotificationSpec
from reconciler.state.file import read_state, write_state
from reconciler.state.lock import state_lock
from reconciler.state.model import State


def enqueue(
    path: Path, notifications: Mapping[str, NotificationSpec], now: str, command: str
) -> tuple[State, int]:
    """The state with this pass's events added; and how many old ones the bound dropped."""
    current = read_state(path)
    if not notifications and current.notices is None:
        return current, 0  # the common case: no Notification, nothing to lock or write
    with state_lock(path, command):
        state = read_state(path)
        updated, dropped = detect(state, notifications, now)
        if updated is not state:
            updated = write_state(path, updated)
    return updated, dropped


def settle(
    path: Path, results: Mapping[tuple[str, str], bool], known: set[str], now: float, command: str
) -> State:
    with state_lock(path, command):
        state = read_state(path)
        updated = settled(state, results, known, now)
        return write_state(path, updated) if updated is not state else state
