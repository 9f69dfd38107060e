"""Options every command shares: where the repo, its specs and its state file are, and who owns them;
the jobs they name, and the shell's completion of those names."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

from reconciler.common.errors import ReconcilerError
from reconciler.common.limits import parse_seconds
from reconciler.specs.repo import read_settings, resolve_paths, resolve_state_url

# The spec loader, the input cache and the state file are imported where an option needs them
# (--refresh-inputs, a shell's completion): every command, `--help` too, imports this module.

F = TypeVar("F", bound=Callable[..., Any])


def repo_options(func: F) -> F:
    """Adds --repo/--specs/--state/--state-url and passes one `paths: RepoPaths` argument instead."""

    def build(
        *args: Any, repo: str, specs: str | None, state: str | None, state_url: str | None, **kwargs: Any
    ) -> Any:
        paths = resolve_paths(repo, specs, state)
        settings = read_settings(paths.repo)  # once per command; a mistake in it stops every command
        url = resolve_state_url(paths.repo, state_url, state, settings)
        return func(*args, paths=dataclasses.replace(paths, state_url=url, settings=settings), **kwargs)

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


def repo_root_option(func: F) -> F:
    """Only --repo, for commands with no use for specs or a state file (`sandbox`)."""

    def build(*args: Any, repo: str, **kwargs: Any) -> Any:
        return func(*args, paths=resolve_paths(repo, None, None), **kwargs)

    functools.update_wrapper(build, func)
    return click.option(  # type: ignore[return-value]
        "--repo",
        metavar="DIR",
        default=".",
        show_default=True,
        type=click.Path(exists=True, file_okay=False),
        help="The repository whose sandbox data to serve.",
    )(build)


def refresh_inputs_option(func: F) -> F:
    """--refresh-inputs; put it right below @repo_options, whose `paths` it reads."""

    def build(*args: Any, refresh_inputs: bool, **kwargs: Any) -> Any:
        if refresh_inputs:
            from reconciler.specs.inputs.cache import drop_cache

            drop_cache(kwargs["paths"].state.parent)
        return func(*args, **kwargs)

    functools.update_wrapper(build, func)
    return click.option(  # type: ignore[return-value]
        "--refresh-inputs",
        is_flag=True,
        help="Read every input again instead of trusting the cached digests.",
    )(build)


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


def allow_over_budget_option(func: F) -> F:
    return click.option(
        "--allow-over-budget",
        is_flag=True,
        help="Carry out this plan even though its estimate passes a budget (spec.budget, reconciler.yaml).",
    )(func)


def parallelism_option(default: int) -> Callable[[F], F]:
    """`--parallelism` of the commands that create and cancel (apply, reconcile).  The default is
    passed in so that this module does not load the API's writer for every command."""
    return click.option(
        "--parallelism",
        default=default,
        show_default=True,
        type=click.IntRange(1, 256),
        help="At most this many requests at once: one per batch to create or cancel, up to this.",
    )


def complete_jobs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The shell's completion of a JOB: the jobs of the specs (as named, nothing checked) and
    of the state file.  No network, no lock, no input read: it answers while a pass runs."""
    return _completions(ctx, param, incomplete, with_state=True)


def complete_spec_jobs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Like complete_jobs, from the specs alone (`--replace` starts a run of a spec)."""
    return _completions(ctx, param, incomplete, with_state=False)


def _completions(
    ctx: click.Context, param: click.Parameter, incomplete: str, *, with_state: bool
) -> list[CompletionItem]:
    from reconciler.specs.loader import job_names
    from reconciler.state.file import read_state

    given = ctx.params.get(param.name or "") or ()
    paths = resolve_paths(ctx.params.get("repo") or ".", ctx.params.get("specs"), ctx.params.get("state"))
    names: set[str] = set()
    # A shell's completion has nowhere to say why a file could not be read: it offers the rest.
    with contextlib.suppress(OSError):
        names |= job_names(paths.specs)
    if with_state:
        with contextlib.suppress(OSError, ReconcilerError):
            names |= set(read_state(paths.state).jobs)
    return [
        CompletionItem(name) for name in sorted(names) if name.startswith(incomplete) and name not in given
    ]


def target_options(func: F) -> F:
    """Adds --target JOB (repeatable); passed as `targets: tuple[str, ...]`."""
    return click.option(
        "--target",
        "targets",
        metavar="JOB",
        multiple=True,
        shell_complete=complete_jobs,
        help="Plan, change or show only this job (repeatable); the others are left as they are.",
    )(func)


def replace_option(func: F) -> F:
    """Adds --replace JOB (repeatable); passed as `replace: tuple[str, ...]`."""
    return click.option(
        "--replace",
        "replace",
        metavar="JOB",
        multiple=True,
        shell_complete=complete_spec_jobs,
        help="Start a new run of this job now, cancelling what its current run still runs (repeatable).",
    )(func)


def no_reuse_option(func: F) -> F:
    return click.option(
        "--no-reuse",
        is_flag=True,
        help="Send every request of a run that starts now, even where spec.reuse has an earlier answer.",
    )(func)


def planning_options(func: F) -> F:
    """What every command that plans takes: the owner, --allow-empty, --target, --replace,
    --no-reuse and --refresh-inputs (in that order in --help)."""
    options = (no_reuse_option, replace_option, target_options, allow_empty_option, owner_option)
    for option in (*options, refresh_inputs_option):
        func = option(func)
    return func


class Seconds(click.ParamType[float]):
    """A number of seconds: finite and within bounds (common/limits.py). click's FloatRange
    lets `inf` through, which overflows the daemon's waits, and `nan`, which passes any range."""

    name = "seconds"

    def __init__(self, least: float = 0.0, *, above: bool = False) -> None:
        self.least = least
        self.above = above  # `least` itself refused: a limit of 0 s would end a command at once

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            return parse_seconds(value, least=self.least, above=self.above)
        except ValueError as error:
            self.fail(f"{value!r} {error}", param, ctx)
