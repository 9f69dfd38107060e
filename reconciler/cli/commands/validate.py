"""`reconciler validate`: every spec, provider and input checked, without touching the network."""

from __future__ import annotations

import click

from reconciler.cli.options import refresh_inputs_option, repo_options
from reconciler.common.errors import SpecError
from reconciler.specs.inputs.cache import digest_repo
from reconciler.specs.loader import scan_repo
from reconciler.specs.repo import RepoPaths, display


@click.command()
@repo_options
@refresh_inputs_option
def command(paths: RepoPaths) -> int:
    """Check specs, providers and input files; exit 0 when valid, 1 listing every problem.

    No request is sent and no variable is read: header ${VAR}s are checked for syntax only.
    """
    scan = scan_repo(paths)
    problems = list(scan.problems)
    try:
        # the input cache is written only for a repo that is valid through and through
        digest_repo(scan.repo, paths, cache=not problems)
    except SpecError as error:
        problems += error.problems
    if problems:
        raise SpecError(problems)
    jobs, providers = len(scan.repo.jobs), len(scan.repo.providers)
    if not jobs and not providers:
        click.echo(
            f"warning: no BatchJob or Provider documents under {display(paths.specs, paths)}", err=True
        )
    click.echo(f"{_count(jobs, 'job')}, {_count(providers, 'provider')}: valid")
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
