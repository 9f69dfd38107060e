"""The outbox in the state: events added after a pass, and taken out once delivered.

Each change is a short read-modify-write under the owner's writer lock of the state backend
(the file, or the database), never holding it across a send.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

from reconciler.engine.notify.detect import detect, settled
from reconciler.specs.models import NotificationSpec
from reconciler.state.backend import StateBackend
from reconciler.state.model import State

# Opens the state backend for one read-modify-write (engine/workspace.open_state, or the daemon's).
OpenState = Callable[[], contextlib.AbstractContextManager[StateBackend]]


def enqueue(
    open_state: OpenState, notifications: Mapping[str, NotificationSpec], now: str, command: str
) -> tuple[State, int]:
    """The state with this pass's events added; and how many old ones the bound dropped."""
    with open_state() as backend:
        current = backend.read()
        if not notifications and current.notices is None:
            return current, 0  # the common case: no Notification, nothing to lock or write
        with backend.writer_lock(command):
            state = backend.read()
            updated, dropped = detect(state, notifications, now)
            if updated is not state:
                updated = backend.write(updated)
    return updated, dropped


def settle(
    open_state: OpenState, results: Mapping[tuple[str, str], bool], known: set[str], now: float, command: str
) -> State:
    with open_state() as backend, backend.writer_lock(command):
        state = backend.read()
        updated = settled(state, results, known, now)
        return backend.write(updated) if updated is not state else state


def current(open_state: OpenState) -> State:
    with open_state() as backend:
        return backend.read()
