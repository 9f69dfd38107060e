"""`reconciler validate` on bad spec documents: exit 1, `file:line: field: message`, nothing written."""

from __future__ import annotations

import os

import pytest

from tests.fixtures.repo import CliResult, MakeRepo, RunCli, UserRepo

RunCli = RunCli


def job_text(
    *,
    api_version: str = "reconciler/v1",
    kind: str = "BatchJob",
    name: str = "nightly-eval",
    endpoint: str = "/v1/chat/completions",
    input: str = "../data/nightly-eval.jsonl",
    extra: str = "",
) -> str:
    """A BatchJob whose lines are known: name on 4, endpoint on 6, input on 7, `extra` from 8."""
    return (
        f"apiVersion: {api_version}\n"
        f"kind: {kind}\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        f"  endpoint: {endpoint}\n"
        f"  input: {input}\n"
        f"{extra}"
    )


def provider_text(
    name: str = "portkey", base_url: str = "http://127.0.0.1:8787/v1", headers: str = ""
) -> str:
    """A Provider: name on 4, base_url on 6, headers' entries from 8."""
    return (
        "apiVersion: reconciler/v1\n"
        "kind: Provider\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        f"  base_url: {base_url}\n" + (f"  headers:\n{headers}" if headers else "")
    )


def error_lines(result: CliResult) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def assert_rejected(result: CliResult, repo: UserRepo, where: str, fragment: str = "") -> None:
    """Exit 1, a line starting with `where` (file:line: field:) holding `fragment`, nothing written."""
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    matching = [line for line in error_lines(result) if line.startswith(f"error: {where}")]
    assert matching, f"no line starting {where!r} in:\n{result.stderr}"
    assert any(fragment in line for line in matching), result.stderr
    assert repo.written() == []
    assert result.stdout == ""


def validate(run_cli: RunCli, repo: UserRepo) -> CliResult:
    return run_cli("validate", *repo.args())


@pytest.fixture
def repo(make_repo: MakeRepo) -> UserRepo:
    """A repo whose only job's input exists, so each test breaks exactly one thing."""
    made = make_repo()
    made.write_input("data/nightly-eval.jsonl", 2)
    return made


BAD_JOBS = [
    ("misspelt-key", job_text(extra="  suspnd: true\n"), "specs/job.yaml:8: spec.suspnd:", "'suspend'"),
    ("misspelt-nested-key", job_text().replace("  name:", "  nmae:"), "specs/job.yaml:4: metadata.nmae:", "did you mean 'name'"),
    ("wrong-api-version", job_text(api_version="reconciler/v2"), "specs/job.yaml:1: apiVersion:", "reconciler/v1"),
    ("unknown-kind", job_text(kind="BatchJobs"), "specs/job.yaml:2: kind:", "did you mean 'BatchJob'"),
    ("uppercase-name", job_text(name="Nightly"), "specs/job.yaml:4: metadata.name:", "lowercase"),
    ("name-ends-in-dash", job_text(name="nightly-"), "specs/job.yaml:4: metadata.name:", "not a valid name"),
    ("name-too-long", job_text(name="a" * 64), "specs/job.yaml:4: metadata.name:", "at most 63"),
    ("endpoint", job_text(endpoint="/v1/chat"), "specs/job.yaml:6: spec.endpoint:", "not a Batch API endpoint"),
    ("window", job_text(extra="  completion_window: 48h\n"), "specs/job.yaml:8: spec.completion_window:", "24h"),
    ("absolute-input", job_text(input="/etc/passwd"), "specs/job.yaml:7: spec.input:", "absolute"),
    ("dotdot-escape", job_text(input="../../outside.jsonl"), "specs/job.yaml:7: spec.input:", "outside the repo"),
    ("missing-input", job_text(input="../data/nope.jsonl"), "specs/job.yaml:7: spec.input:", "does not exist"),
    ("input-is-a-folder", job_text(input="../data"), "specs/job.yaml:7: spec.input:", "not a regular file"),
    ("unknown-provider", job_text(extra="  provider: portkee\n"), "specs/job.yaml:8: spec.provider:", "no Provider"),
    ("sandbox-by-name", job_text(extra="  provider: sandbox\n"), "specs/job.yaml:8: spec.provider:", "omit provider"),
    ("bad-policy", job_text(extra="  deletion_policy: keep\n"), "specs/job.yaml:8: spec.deletion_policy:", "orphan"),
    ("string-bool", job_text(extra="  suspend: 'yes'\n"), "specs/job.yaml:8: spec.suspend:", "true or false"),
    ("missing-spec-key", job_text().replace("  endpoint: /v1/chat/completions\n", ""), "specs/job.yaml:5: spec.endpoint:", "required"),
    ("missing-metadata", "apiVersion: reconciler/v1\nkind: BatchJob\nspec: {}\n", "specs/job.yaml:1: metadata:", "required"),
    ("missing-kind", "apiVersion: reconciler/v1\nmetadata: {name: x}\n", "specs/job.yaml:1: kind:", "BatchJob"),
    ("not-a-mapping", "- just\n- a list\n", "specs/job.yaml:1:", "must be a mapping"),
    ("scalar-document", "hello\n", "specs/job.yaml:1:", "must be a mapping"),
    ("yaml-syntax", job_text(extra="  metadata: {a: b\n"), "specs/job.yaml:8:", "flow mapping that starts on line 8"),
    ("yaml-tab", job_text(extra="\tsuspend: true\n"), "specs/job.yaml:8:", "invalid YAML"),
    ("duplicate-key", job_text(extra="  endpoint: /v1/embeddings\n"), "specs/job.yaml:8:", "duplicate key 'endpoint' (first on line 6)"),
    ("bad-date", job_text(extra="  metadata: {when: 2024-13-45}\n"), "specs/job.yaml:1:", "invalid YAML value"),
    ("unquoted-number", job_text(extra="  metadata: {version: 1.5}\n"), "specs/job.yaml:8: spec.metadata.version:", "quotes around the value"),
    ("number-as-key", job_text(extra="  metadata:\n    007: bond\n"), "specs/job.yaml:9: spec.metadata.007:", "quotes around the key"),
    ("schedule-macro-typo", job_text(extra='  schedule: "@dayly"\n'), "specs/job.yaml:8: spec.schedule:", "not a schedule macro; did you mean '@daily'?"),
    ("schedule-every", job_text(extra='  schedule: "@every 1h"\n'), "specs/job.yaml:8: spec.schedule:", "use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, or five cron fields"),
    ("schedule-four-fields", job_text(extra='  schedule: "0 2 * *"\n'), "specs/job.yaml:8: spec.schedule:", "or a macro such as @daily"),
    ("labels-not-a-map", job_text().replace("  name: nightly-eval\n", "  name: nightly-eval\n  labels: [a]\n"), "specs/job.yaml:5: metadata.labels:", "mapping"),
    ("infinite-budget", job_text(extra="  budget: {max_usd: .inf}\n"), "specs/job.yaml:8: spec.budget.max_usd:", "must be a finite number"),
    ("nan-budget", job_text(extra="  budget: {max_usd: .nan}\n"), "specs/job.yaml:8: spec.budget.max_usd:", "must be a finite number"),
    ("huge-deadline", job_text(extra="  schedule: '0 2 * * *'\n  starting_deadline: 100000000000000000000000\n"), "specs/job.yaml:9: spec.starting_deadline:", "at most 366d"),
    ("long-deadline", job_text(extra="  schedule: '0 2 * * *'\n  starting_deadline: 367d\n"), "specs/job.yaml:9: spec.starting_deadline:", "at most 366d"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "where", "fragment"), [case[1:] for case in BAD_JOBS], ids=[c[0] for c in BAD_JOBS]
)
def test_a_bad_job_document_is_reported_at_its_file_and_line(
    repo: UserRepo, run_cli: RunCli, text: str, where: str, fragment: str
) -> None:
    repo.write_spec("specs/job.yaml", text)
    assert_rejected(validate(run_cli, repo), repo, where, fragment)


METADATA = [
    ("nine-pairs", "".join(f"    k{i}: v\n" for i in range(9)), "specs/job.yaml:8: spec.metadata:", "at most 8"),
    ("reserved-key", "    reconciler_job: mine\n", "specs/job.yaml:9: spec.metadata.reconciler_job:", "reserved"),
    ("key-too-long", f"    {'k' * 65}: v\n", f"specs/job.yaml:9: spec.metadata.{'k' * 65}:", "1 to 64"),
    ("value-too-long", f"    note: {'v' * 513}\n", "specs/job.yaml:9: spec.metadata.note:", "at most 512"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("pairs", "where", "fragment"), [c[1:] for c in METADATA], ids=[c[0] for c in METADATA]
)
def test_user_metadata_must_fit_beside_the_ownership_keys(
    repo: UserRepo, run_cli: RunCli, pairs: str, where: str, fragment: str
) -> None:
    repo.write_spec("specs/job.yaml", job_text(extra="  metadata:\n" + pairs))
    assert_rejected(validate(run_cli, repo), repo, where, fragment)


def test_eight_metadata_pairs_of_maximum_size_are_accepted(repo: UserRepo, run_cli: RunCli) -> None:
    pairs = "".join(f"    {'k' * 63}{i}: {'v' * 512}\n" for i in range(8))
    repo.write_spec("specs/job.yaml", job_text(extra="  metadata:\n" + pairs))
    result = validate(run_cli, repo)
    assert result.exit_code == 0, result.stderr


BAD_PROVIDERS = [
    ("unclosed-variable", provider_text(headers="    x-portkey-api-key: ${PORTKEY_API_KEY\n"), "specs/portkey.yaml:8: spec.headers.x-portkey-api-key:", "unclosed"),
    ("empty-variable", provider_text(headers="    x-key: ${}\n"), "specs/portkey.yaml:8: spec.headers.x-key:", "empty"),
    ("bad-variable-name", provider_text(headers="    x-key: ${1ABC}\n"), "specs/portkey.yaml:8: spec.headers.x-key:", "digit"),
    ("braceless-variable", provider_text(headers="    Authorization: Bearer $OPENAI_API_KEY\n"), "specs/portkey.yaml:8: spec.headers.Authorization:", "${NAME}"),
    ("bad-header-name", provider_text(headers="    'x key': v\n"), "specs/portkey.yaml:8: spec.headers.x key:", "header name"),
    ("header-twice", provider_text(headers="    X-Key: a\n    x-key: b\n"), "specs/portkey.yaml:7: spec.headers:", "twice"),
    ("ftp-url", provider_text(base_url="ftp://example.com/v1"), "specs/portkey.yaml:6: spec.base_url:", "http"),
    ("no-host", provider_text(base_url="https:///v1"), "specs/portkey.yaml:6: spec.base_url:", "host"),
    ("variable-in-url", provider_text(base_url="https://${HOST}/v1"), "specs/portkey.yaml:6: spec.base_url:", "only expanded in headers"),
    ("reserved-name", provider_text(name="sandbox"), "specs/portkey.yaml:4: metadata.name:", "built-in sandbox"),
    ("misspelt-key", provider_text().replace("base_url", "baseurl"), "specs/portkey.yaml:6: spec.baseurl:", "did you mean 'base_url'"),
    ("infinite-price", provider_text() + "  pricing:\n    gpt-4o-mini: {input: .inf, output: 1}\n", "specs/portkey.yaml:8: spec.pricing.gpt-4o-mini.input:", "must be a finite number"),
    ("nan-price", provider_text() + "  pricing:\n    gpt-4o-mini: {input: 1, output: .nan}\n", "specs/portkey.yaml:8: spec.pricing.gpt-4o-mini.output:", "must be a finite number"),
    ("overflowing-price", provider_text() + "  pricing:\n    gpt-4o-mini: {input: 1.0e+308, output: 1}\n", "specs/portkey.yaml:8: spec.pricing.gpt-4o-mini.input:", "less than or equal to 1000000"),
    ("huge-output-cap", provider_text() + "  pricing:\n    gpt-4o-mini: {input: 1, output: 1, max_output_tokens: 100000000000}\n", "specs/portkey.yaml:8: spec.pricing.gpt-4o-mini.max_output_tokens:", "less than or equal to 10000000"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "where", "fragment"), [c[1:] for c in BAD_PROVIDERS], ids=[c[0] for c in BAD_PROVIDERS]
)
def test_a_bad_provider_document_is_reported_at_its_file_and_line(
    repo: UserRepo, run_cli: RunCli, text: str, where: str, fragment: str
) -> None:
    repo.write_spec("specs/portkey.yaml", text)
    assert_rejected(validate(run_cli, repo), repo, where, fragment)


def test_credentials_in_base_url_are_refused_without_being_echoed(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_spec(
        "specs/portkey.yaml", provider_text(base_url="https://bob:s3cr3t-pw@api.example.com/v1?key=k3y")
    )
    result = validate(run_cli, repo)
    assert_rejected(result, repo, "specs/portkey.yaml:6: spec.base_url:", "user:password@")
    assert "s3cr3t-pw" not in result.stderr and "k3y" not in result.stderr


def test_header_values_never_appear_in_messages(repo: UserRepo, run_cli: RunCli) -> None:
    secret = "sk-live-abcdef123456"
    repo.write_spec(
        "specs/portkey.yaml", provider_text(headers=f"    Authorization: Bearer {secret} ${{BROKEN\n")
    )
    result = validate(run_cli, repo)
    assert_rejected(result, repo, "specs/portkey.yaml:8: spec.headers.Authorization:", "unclosed")
    assert secret not in result.stderr


def test_duplicate_job_names_are_reported_at_both_places(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_spec("specs/a.yaml", job_text())
    repo.write_spec("specs/team/b.yml", "# second copy\n" + job_text())
    result = validate(run_cli, repo)
    assert_rejected(result, repo, "specs/a.yaml:4: metadata.name:", "also at specs/team/b.yml:5")
    assert_rejected(result, repo, "specs/team/b.yml:5: metadata.name:", "also at specs/a.yaml:4")


def test_a_job_and_a_provider_may_share_a_name(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_spec(
        "specs/all.yaml",
        job_text(extra="  provider: nightly-eval\n") + "---\n" + provider_text("nightly-eval"),
    )
    result = validate(run_cli, repo)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "1 job, 1 provider: valid\n"


def test_duplicate_provider_names_are_reported(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_spec("specs/p.yaml", provider_text() + "---\n" + provider_text())
    result = validate(run_cli, repo)
    assert_rejected(
        result,
        repo,
        "specs/p.yaml:4: metadata.name:",
        "duplicate Provider name 'portkey'; also at specs/p.yaml:11",
    )


def test_an_input_symlink_leading_out_of_the_repo_is_refused(repo: UserRepo, run_cli: RunCli) -> None:
    outside = repo.root.parent / "outside.jsonl"
    outside.write_bytes((repo.data / "nightly-eval.jsonl").read_bytes())
    os.symlink(outside, repo.data / "linked.jsonl")
    repo.write_spec("specs/job.yaml", job_text(input="../data/linked.jsonl"))
    assert_rejected(validate(run_cli, repo), repo, "specs/job.yaml:7: spec.input:", "outside the repo")


def test_an_input_symlink_inside_the_repo_is_followed(repo: UserRepo, run_cli: RunCli) -> None:
    os.symlink(repo.data / "nightly-eval.jsonl", repo.data / "latest.jsonl")
    repo.write_spec("specs/job.yaml", job_text(input="../data/latest.jsonl"))
    assert validate(run_cli, repo).exit_code == 0


def test_dotdot_that_stays_inside_the_repo_is_fine(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_spec("specs/deep/er/job.yaml", job_text(input="../../../specs/../data/nightly-eval.jsonl"))
    result = validate(run_cli, repo)
    assert result.exit_code == 0, result.stderr


def test_a_spec_file_that_is_not_utf8_is_reported_with_its_line(repo: UserRepo, run_cli: RunCli) -> None:
    (repo.specs / "job.yaml").write_bytes(job_text().encode() + b"  # caf\xe9\n")
    assert_rejected(validate(run_cli, repo), repo, "specs/job.yaml:8:", "UTF-8")


def test_a_missing_specs_folder_is_named(make_repo: MakeRepo, run_cli: RunCli) -> None:
    repo = make_repo()
    repo.specs.rmdir()
    assert_rejected(validate(run_cli, repo), repo, "specs:", "--specs")


def test_an_empty_specs_folder_is_valid_with_a_warning(make_repo: MakeRepo, run_cli: RunCli) -> None:
    repo = make_repo()
    result = validate(run_cli, repo)
    assert (result.exit_code, result.stdout) == (0, "0 jobs, 0 providers: valid\n")
    assert "warning: no BatchJob or Provider documents under specs" in result.stderr


def test_every_problem_in_every_file_is_reported_at_once(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_spec("specs/a.yaml", job_text(name="a", endpoint="/v1/nope", extra="  suspnd: true\n"))
    repo.write_spec("specs/b.yaml", provider_text(headers="    x: ${\n") + "---\n" + job_text(name="B"))
    repo.write_spec("specs/c.yaml", "key: [unclosed\n")
    result = validate(run_cli, repo)
    assert result.exit_code == 1
    assert [line.split(":")[1] for line in error_lines(result)] == [
        " specs/a.yaml", " specs/a.yaml", " specs/b.yaml", " specs/b.yaml", " specs/c.yaml"
    ]  # fmt: skip


def test_empty_documents_and_other_files_are_skipped(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_spec("specs/job.yaml", "---\n# nothing here\n---\n" + job_text() + "---\n...\n")
    repo.write_spec("specs/README.md", "not: [yaml")
    repo.write_spec("specs/empty.yml", "")
    result = validate(run_cli, repo)
    assert (result.exit_code, result.stdout) == (0, "1 job, 0 providers: valid\n"), result.stderr


def test_a_document_after_a_good_one_keeps_its_own_line(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_spec("specs/all.yaml", provider_text() + "---\n" + job_text(endpoint="/v2/chat"))
    assert_rejected(validate(run_cli, repo), repo, "specs/all.yaml:13: spec.endpoint:", "/v2/chat")


def test_specs_option_points_at_another_folder(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_spec("elsewhere/job.yaml", job_text())
    result = run_cli("validate", *repo.args("--specs", str(repo.root / "elsewhere")))
    assert (result.exit_code, result.stdout) == (0, "1 job, 0 providers: valid\n"), result.stderr
