"""Options every command shares: where the repo, its specs and its state file are, and who owns them."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reconciler.specs.paths import resolve_paths
from reconciler.specs.state_location import resolve_state_url

F = TypeVar("F", bound=Callable[..., Any])


def repo_options(func: F) -> F:
    """Adds --repo/--specs/--state/--state-url and passes one `paths: RepoPaths` argument instead."""

    def build(
        *args: Any, repo: str, specs: str | None, state: str | None, state_url: str | None, **kwargs: Any
    ) -> Any:
        paths = resolve_paths(repo, specs, state)
        url = resolve_state_url(paths.repo, state_url, state)
        return func(*args, paths=dataclasses.replace(paths, state_url=url), **kwargs)

    functools.update_wrapper(build, func)  # keeps options declared below this decorator
    decorated = click.option(
        "--state-url",
        metavar="URL",
        help="Keep the state in PostgreSQL: postgresql://USER@HOST[:PORT]/DB, no password "
        "[default: $RECONCILER_STATE_URL, or `state:` in reconciler.yaml].",
    )(build)
    decorated = click.option(
        "--state", metavar="FILE", help="State file [default: <repo>/.reconciler/state.json]."
    )(decorated)
    decorated = click.option("--specs", metavar="DIR", help="Specs directory [default: <repo>/specs].")(
        decorated
    )
    decorated = click.option(
        "--repo",
        metavar="DIR",
        default=".",
        show_default=True,
        type=click.Path(exists=True, file_okay=False),
        help="The repository holding specs and inputs.",
    )(decorated)
    return decorated  # type: ignore[return-value]


def owner_option(func: F) -> F:
    return click.option(
        "--owner",
        metavar="ID",
        envvar=None,
        help="Owner id of this repo's batches [default: $RECONCILER_OWNER, `owner:` in "
        "reconciler.yaml, or the git remote origin].",
    )(func)


def allow_empty_option(func: F) -> F:
    return click.option(
        "--allow-empty",
        is_flag=True,
        help="Allow a plan that cancels every job because no specs were found.",
    )(func)
