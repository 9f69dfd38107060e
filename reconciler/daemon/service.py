"""`reconciler reconcile --watch`: the daemon.

The main thread holds the state backend's leadership guard (state/backend.Leadership), serves
the health endpoint and waits for SIGTERM or SIGINT (SIGHUP reloads the specs); the loop
(loop.py) runs on its own thread. On a stop signal the pass in flight gets a few seconds to
finish; if it does not, it is abandoned — safe by construction, since every create's intent is
in the state before its request goes out, and the state is only ever written atomically (a
state file's journal line is whole or ignored).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

from reconciler.daemon.board import Board, Metrics
from reconciler.daemon.hooks import Announcer, Hooks
from reconciler.daemon.loop import Daemon, Role, Settings
from reconciler.daemon.timing import Cadence, Waker
from reconciler.daemon.web import Caps, Site, serve_health
from reconciler.daemon.webhooks import WebhookInbox
from reconciler.engine.events import EventLog, warnings_to
from reconciler.engine.workspace import Workspace, load_state, open_state
from reconciler.specs import identity
from reconciler.specs.loader import LoadedRepo
from reconciler.specs.repo import RepoPaths

SHUTDOWN_GRACE_SECONDS = 3.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class WatchOptions:
    repo_arg: str
    specs_arg: str | None
    owner: str | None
    allow_empty: bool
    parallelism: int
    interval: float
    log_format: str
    health: tuple[str, int] | None


def run_watch(paths: RepoPaths, options: WatchOptions) -> int:
    owner = identity.resolve_owner(paths.repo, options.owner, paths.repo_settings())
    # A damaged state file or one of another owner would fail every pass: refuse to start
    # instead, before writing anything (the specs, in contrast, may be fixed while we run).
    ws = Workspace(paths, LoadedRepo({}, {}), {}, {}, owner)
    with open_state(ws) as backend:
        recorded = load_state(ws, backend=backend)
        where, leadership = backend.where, backend.leadership()
    log = EventLog(options.log_format)
    settings = Settings(
        state=paths.state,
        repo_arg=options.repo_arg,
        specs_arg=options.specs_arg,
        owner=owner,
        cadence=Cadence(options.interval),
        allow_empty=options.allow_empty,
        parallelism=options.parallelism,
        state_url=paths.state_url,
    )
    with contextlib.ExitStack() as stack:
        # A state file: one daemon per file (LockHeldError for a second); a database: replicas elect.
        stack.enter_context(leadership)
        waker, metrics = Waker(), Metrics()
        stack.enter_context(_stop_signals(waker, log))
        stack.enter_context(warnings_to(log))
        tag = identity.owner_tag(owner)
        # The announcer writes the outbox as a command would: its writes are folded into the state
        # file as it lets go, since no pass may follow to fold them (everything finished).
        states = functools.partial(open_state, ws)
        board, announcer = Board(), Announcer(states, tag, log, metrics)
        board.publish(state=recorded, repo=identity.repo_name(paths.repo, owner))
        inbox = WebhookInbox(board, waker.refresh, log, metrics) if options.health else None
        role = Role(leadership, log, metrics)
        daemon = Daemon(settings, log, metrics, waker, Hooks(board, announcer, inbox), role)
        announcer.start()
        stack.callback(announcer.stop)
        stack.callback(board.close)
        if options.health:
            caps = Caps.for_this_process()
            site = Site(board, metrics, daemon.liveness.report, inbox, caps.streams)
            host, port = stack.enter_context(serve_health(*options.health, site, caps))
            shown = f"[{host}]" if ":" in host else host
            log.info(
                "health",
                f"dashboard on http://{shown}:{port}/, health on /healthz, metrics on /metrics",
                port=port,
            )
        log.info(
            "start",
            f"reconciling {paths.specs} into {where}; resync every {options.interval:g}s",
            specs=str(paths.specs),
            state=where,
            owner_tag=identity.owner_tag(owner),
        )
        loop = threading.Thread(target=daemon.run, name="reconcile-loop", daemon=True)
        loop.start()
        return _until_stopped(loop, waker, log)


def _until_stopped(loop: threading.Thread, waker: Waker, log: EventLog) -> int:
    while loop.is_alive() and waker.stop_reason is None:
        loop.join(0.2)  # short joins, so the main thread runs signal handlers promptly
    if waker.stop_reason is None:  # the loop ended by itself: only a bug gets here
        log.error("crashed", "the reconcile loop stopped unexpectedly")
        return 1
    log.info("stopping", f"{waker.stop_reason}: letting the pass in flight finish")
    loop.join(SHUTDOWN_GRACE_SECONDS)
    if loop.is_alive():
        log.warning(
            "abandoned",
            "the pass in flight did not finish in time; its creates are resolved on the next start",
        )
        _exit_now()
    log.info("stopped", "stopped")
    return 0


@contextlib.contextmanager
def _stop_signals(waker: Waker, log: EventLog) -> Iterator[None]:
    def on_signal(number: int, frame: FrameType | None) -> None:
        if waker.stop_reason is not None:  # asked twice: do not wait for the pass
            log.warning("abandoned", f"{signal.Signals(number).name} again: exiting now")
            _exit_now()
        waker.stop(signal.Signals(number).name)

    def on_hangup(number: int, frame: FrameType | None) -> None:
        # The terminal went away, or an operator asks for a reload: never a silent death.
        log.info("reload", "SIGHUP: reloading the specs")
        waker.files_changed()

    previous = {number: signal.signal(number, on_signal) for number in STOP_SIGNALS}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler is not None:  # None: installed outside Python; nothing to put back
                signal.signal(number, handler)


def _exit_now() -> None:
    """Leaves without waiting for the threads of an abandoned pass (os._exit skips atexit joins)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)
