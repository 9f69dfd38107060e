"""`reconciler output`: each job's answers — status, counts, batch and file ids, results, usage.

Reads the state and the specs, and no network; `--download DIR` fetches the provider's
output and error files and writes the merged results there, changing no state.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.options import complete_jobs, repo_options
from reconciler.cli.render_output import output_document, output_json, output_text
from reconciler.cli.render_status import StatusView, check_names, status_view
from reconciler.common.errors import UserError
from reconciler.daemon.passes import load
from reconciler.engine.connect import open_clients
from reconciler.engine.results import download_results
from reconciler.specs.repo import RepoPaths


@click.command()
@repo_options
@click.argument("jobs", nargs=-1, metavar="[JOB]...", shell_complete=complete_jobs)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document (schema/output-v1.schema.json)."
)
@click.option(
    "--download",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Write each JOB's merged results to DIR/<job>.jsonl, from the provider's files.",
)
def command(paths: RepoPaths, jobs: tuple[str, ...], as_json: bool, download: str | None) -> int:
    """What each job produced: status, counts, batch ids, output and error files, results, usage."""
    view = status_view(paths, reading="offline")
    names = _names(view, jobs)
    if download is not None:
        if not jobs:
            raise UserError(
                "--download needs the jobs to download: `reconciler output JOB... --download DIR`"
            )
        _download(paths, view, names, Path(download))
    elif as_json:
        click.echo(output_json(output_document(view, names)))
    else:
        click.echo(output_text(view, names))
    return 0


def _names(view: StatusView, jobs: tuple[str, ...]) -> list[str]:
    check_names(view, jobs)
    for name in (name for name in jobs if name not in view.state.jobs):
        raise UserError(f"{name}: no batch yet, so no output; `reconciler apply` creates it")
    return list(dict.fromkeys(jobs)) if jobs else sorted(view.state.jobs)


def _download(paths: RepoPaths, view: StatusView, names: list[str], directory: Path) -> None:
    loaded = load(paths, "", None)
    missing = [name for name in names if name not in loaded.ws.desired]
    if missing:
        raise UserError(
            f"{missing[0]}: no valid spec for this job; the results are joined to its input, "
            "so its spec and input must validate"
        )
    directory.mkdir(parents=True, exist_ok=True)
    providers = {view.state.jobs[name].provider for name in names}
    with open_clients(loaded.ws.repo, providers, paths) as apis:
        for name in names:
            recorded = view.state.jobs[name]
            target = directory / f"{name}.jsonl"
            written = download_results(
                loaded.ws.desired[name], recorded, apis[recorded.provider].reader, target
            )
            click.echo(f"{name}: wrote {target} ({written.requests} lines, sha256 {written.sha256})")
