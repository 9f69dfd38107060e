"""What `status` shows: the state file, the specs beside it (for sync), and with `--refresh`
the live list observed first — read-only unless `--save` asks for the state to be written."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.common.errors import UserError
from reconciler.daemon.passes import load
from reconciler.engine.connect import open_clients
from reconciler.engine.converge import observe_and_record, readers_of, utc_now
from reconciler.engine.observe import observe
from reconciler.engine.workspace import behind, load_state, read_recorded
from reconciler.plans.changes import DesiredJob
from reconciler.plans.record import record
from reconciler.specs import identity
from reconciler.specs.repo import RepoPaths
from reconciler.state.model import State

COMMAND = "reconciler status --refresh --save"


@dataclass(frozen=True)
class StatusView:
    state: State
    desired: Mapping[str, DesiredJob] | None  # None: no specs folder to compare with
    problems: tuple[str, ...]  # invalid specs, one line each
    repo_root: Path


def status_view(paths: RepoPaths, *, refresh: bool, save: bool, owner_flag: str | None) -> StatusView:
    if not refresh:
        state = read_recorded(paths, owner_flag)
        if not paths.specs.is_dir():
            return StatusView(state, None, (), paths.repo)
        loaded = load(paths, "", None)  # the owner matters only to a refresh
        return StatusView(state, loaded.ws.desired, tuple(map(str, loaded.problems)), paths.repo)
    loaded = load(paths, identity.resolve_owner(paths.repo, owner_flag, paths.repo_settings()), None)
    ws = loaded.ws
    state = load_state(ws)  # refuses a state of another owner
    with open_clients(ws.repo, ws.providers(state), paths) as apis:
        if save:
            state = observe_and_record(ws, readers_of(apis), COMMAND)
        else:
            live = observe(readers_of(apis), ws.owner_tag, ws.desired, state)
            newer = behind(ws, state, ws.desired)  # shown as the newer checkout left them
            state = record(ws.desired, state, live, now=utc_now(), observed_only=newer)
    return StatusView(state, ws.desired, tuple(map(str, loaded.problems)), paths.repo)


def only(view: StatusView, targets: tuple[str, ...]) -> StatusView:
    """The view narrowed to `targets` (all jobs when none); an unknown target is an error."""
    if not targets:
        return view
    known = set(view.state.jobs) | set(view.desired or {})
    for name in sorted(set(targets) - known):
        raise UserError(
            f"{name}: no job of that name in the state or the specs; `reconciler status` lists them"
        )
    jobs = {name: job for name, job in view.state.jobs.items() if name in targets}
    desired = {n: j for n, j in view.desired.items() if n in targets} if view.desired is not None else None
    return dataclasses.replace(view, state=view.state.with_jobs(jobs), desired=desired)
