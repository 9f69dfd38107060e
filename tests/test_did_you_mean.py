"""A name a user types that names nothing: one line with a "did you mean", exit 1, nothing sent,
nothing written — for job names on the command line (`--target`, `--replace`, `status JOB`,
`output JOB`) and for the names a spec refers to (a Provider, a Notification's jobs, a policy)."""

from __future__ import annotations

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import CliResult, MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import state_of, use_sandbox


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    made = make_repo()
    made.write_job("nightly-eval")
    made.write_job("ab-test")
    return made


def one_line(result: CliResult, text: str) -> None:
    """Exit 1 and a single `error:` line holding `text`, no traceback."""
    assert result.exit_code == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"error: {text}"], result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("plan", "--target", "nightly-evl"), "--target nightly-evl: no job of that name in the specs or the state"),
        (("apply", "--auto-approve", "--target", "nightly-evl"), "--target nightly-evl: no job of that name in the specs or the state"),
        (("reconcile", "--target", "nightly-evl"), "--target nightly-evl: no job of that name in the specs or the state"),
        (("apply", "--auto-approve", "--replace", "nightly-evl"), "--replace nightly-evl: no job of that name in the specs"),
        (("reconcile", "--wait", "--replace", "nightly-evl"), "--replace nightly-evl: no job of that name in the specs"),
    ],
)  # fmt: skip
def test_a_misspelt_target_or_replace_is_one_line_with_the_job_meant_and_nothing_is_sent(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, args: tuple[str, ...], said: str
) -> None:
    sandbox.reset_counts()
    result = run_cli(*args, *repo.args())
    one_line(result, f"{said}; did you mean 'nightly-eval'?")
    assert sandbox.request_counts() == {}
    assert not repo.state.exists()


def test_a_target_like_no_job_at_all_points_at_status_instead_of_guessing(
    repo: UserRepo, run_cli: RunCli
) -> None:
    result = run_cli("plan", "--target", "zzz", *repo.args())
    one_line(
        result,
        "--target zzz: no job of that name in the specs or the state; `reconciler status` lists them",
    )


def test_status_and_output_of_a_misspelt_job_name_the_job_meant(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    recorded = repo.state.read_bytes()
    sandbox.reset_counts()
    meant = "; did you mean 'ab-test'?"
    one_line(run_cli("status", "ab-tset", *repo.args()), f"no job 'ab-tset' in the state or the specs{meant}")
    one_line(
        run_cli("status", "--target", "ab-tset", *repo.args()),
        f"--target ab-tset: no job of that name in the state or the specs{meant}",
    )
    one_line(run_cli("output", "ab-tset", *repo.args()), f"no job 'ab-tset' in the state or the specs{meant}")
    assert sandbox.request_counts() == {}
    assert repo.state.read_bytes() == recorded


def test_output_of_a_job_not_created_yet_says_so(repo: UserRepo, run_cli: RunCli) -> None:
    assert run_cli("apply", "--auto-approve", "--target", "ab-test", *repo.args()).exit_code == 0
    one_line(
        run_cli("output", "nightly-eval", *repo.args()),
        "nightly-eval: no batch yet, so no output; `reconciler apply` creates it",
    )


def test_a_misspelt_provider_names_the_provider_meant(make_repo: MakeRepo, run_cli: RunCli) -> None:
    repo = make_repo()
    repo.write_provider("portkey", base_url="http://127.0.0.1:8787/v1")
    path = repo.write_job("nightly-eval", provider="portkee")
    result = run_cli("validate", *repo.args())
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "provider:" in text)
    one_line(
        result,
        f"specs/nightly-eval.yaml:{line}: spec.provider: no Provider named 'portkee' in the specs; "
        "did you mean 'portkey'?",
    )


NOTIFICATION = """
apiVersion: reconciler/v1
kind: Notification
metadata: {{name: evals}}
spec:
  url: https://hooks.example.com/x
  jobs: {jobs}
"""


@pytest.mark.parametrize(
    ("jobs", "said"),
    [
        ('["nightly-evl"]', "'nightly-evl' names no BatchJob in the specs; did you mean 'nightly-eval'?"),
        ('["ab-test", "zzz"]', "'zzz' names no BatchJob in the specs; write a job's name, or a pattern such as nightly-*"),
    ],
)  # fmt: skip
def test_a_notification_selector_naming_no_job_is_refused_with_the_job_meant(
    repo: UserRepo, run_cli: RunCli, jobs: str, said: str
) -> None:
    repo.write_spec("specs/notify.yaml", NOTIFICATION.format(jobs=jobs))
    one_line(run_cli("validate", *repo.args()), f"specs/notify.yaml:6: spec.jobs: {said}")
    one_line(run_cli("plan", *repo.args()), f"specs/notify.yaml:6: spec.jobs: {said}")


def test_notification_patterns_and_job_names_that_exist_are_fine(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_spec("specs/notify.yaml", NOTIFICATION.format(jobs='["nightly-eval", "later-*", "a?-test"]'))
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 0, result.stderr


def test_a_misspelt_choice_names_the_choice_meant(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_job("weekly", schedule="@weekly", concurrency_policy="replce")
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 1
    assert (
        "spec.concurrency_policy: must be 'forbid', 'replace' or 'allow'; did you mean 'replace'?"
        in result.stderr
    )


def test_a_provider_the_state_records_but_the_specs_renamed_is_named(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(monkeypatch, sandbox)
    repo = make_repo()
    repo.write_provider("openai", base_url=sandbox.base_url)
    repo.write_job("nightly-eval", provider="openai")
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    for path in repo.specs.iterdir():
        path.write_text(path.read_text().replace("openai", "open-ai"))
    recorded = state_of(repo.root)
    result = run_cli("plan", *repo.args())
    one_line(
        result,
        "the state records jobs on provider 'openai', but no Provider document has that name "
        "(was it renamed 'open-ai'?); restore it so those batches can be cancelled or forgotten",
    )
    assert state_of(repo.root) == recorded
