"""Spec files are parsed once per file identity: a scan hands back the documents it parsed
before for every file unchanged since, and parses again any file written since, even one
whose size and mtime were put back."""

from __future__ import annotations

import os
import time

import pytest

from reconciler.specs import loader, yamlsource
from reconciler.specs.loader import scan_repo
from tests.fixtures.repo import MakeRepo, UserRepo


@pytest.fixture
def old_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as settled at once (normally after 2 s): the test need not wait."""
    monkeypatch.setattr(loader, "RECENT_SECONDS", -1.0)


def _scan_jobs(repo: UserRepo) -> dict[str, object]:
    scan = scan_repo(repo.paths, remember=True)
    assert scan.problems == []
    return {name: job.job for name, job in scan.repo.jobs.items()}


def test_an_unchanged_spec_file_is_not_parsed_again(make_repo: MakeRepo, old_enough: None) -> None:
    repo = make_repo()
    repo.write_job("first")
    repo.write_job("second")
    before = _scan_jobs(repo)
    after = _scan_jobs(repo)
    assert after.keys() == {"first", "second"}
    assert all(after[name] is before[name] for name in after)  # the very objects: no parse


def test_a_spec_written_again_with_its_size_and_mtime_put_back_is_parsed_again(
    make_repo: MakeRepo, old_enough: None
) -> None:
    repo = make_repo()
    spec = repo.write_job("first", metadata={"team": "aaaa"})
    kept = os.stat(spec)
    before = _scan_jobs(repo)
    time.sleep(0.05)  # a later tick of the filesystem's clock: the ctime moves
    spec.write_text(spec.read_text().replace("aaaa", "bbbb"))
    os.utime(spec, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    assert os.stat(spec).st_size == kept.st_size
    after = _scan_jobs(repo)
    assert after["first"] is not before["first"]
    assert "bbbb" in repr(after["first"])


def test_a_just_written_spec_is_parsed_on_every_scan(make_repo: MakeRepo) -> None:
    """Two writes within one clock tick may leave one identity: a fresh file is never trusted."""
    repo = make_repo()
    repo.write_job("first")
    before = _scan_jobs(repo)
    assert _scan_jobs(repo)["first"] is not before["first"]


def test_a_removed_spec_file_is_forgotten(make_repo: MakeRepo, old_enough: None) -> None:
    repo = make_repo()
    repo.write_job("first")
    gone = repo.write_job("second")
    _scan_jobs(repo)
    gone.unlink()
    assert _scan_jobs(repo).keys() == {"first"}
    assert list(loader._by_folder[repo.paths.specs.absolute()]) == [repo.root / "specs" / "first.yaml"]


def test_a_one_shot_scan_keeps_nothing(make_repo: MakeRepo, old_enough: None) -> None:
    repo = make_repo()
    repo.write_job("first")
    before = scan_repo(repo.paths).repo.jobs["first"].job
    assert scan_repo(repo.paths).repo.jobs["first"].job is not before
    assert repo.paths.specs.absolute() not in loader._by_folder


def test_a_clean_load_looks_up_no_line_and_a_later_problem_finds_its_own(make_repo: MakeRepo) -> None:
    """Where a field is written is worked out only for a problem: a valid repo places nothing.
    A problem found after validation still names its line, in the right document of its file,
    even when a later document of that file does not parse."""
    repo = make_repo()
    for index in range(20):
        repo.write_job(f"job-{index}")
    placed = yamlsource.work["located"]
    assert scan_repo(repo.paths).problems == []
    assert yamlsource.work["located"] == placed

    repo.write_spec(
        "specs/more.yaml",
        """\
        apiVersion: reconciler/v1
        kind: BatchJob
        metadata: {name: fine}
        spec: {endpoint: /v1/chat/completions, input: ../data/job-0.jsonl}
        ---
        # the same name as specs/job-3.yaml
        apiVersion: reconciler/v1
        kind: BatchJob
        metadata:
          name: job-3
        spec:
          endpoint: /v1/chat/completions
          provider: nowhere
          input: ../data/job-3.jsonl
        ---
        broken: [
        """,
    )
    problems = [str(problem) for problem in scan_repo(repo.paths).problems]
    assert any(p.startswith("specs/more.yaml:10: metadata.name: duplicate BatchJob name") for p in problems)
    assert any(
        p.startswith("specs/more.yaml:13: spec.provider: no Provider named 'nowhere'") for p in problems
    )
    assert yamlsource.work["located"] > placed


def _parsed() -> int:
    return yamlsource.work["parsed"]


def test_a_one_shot_scan_parses_only_the_spec_files_written_since_the_last_one(
    make_repo: MakeRepo, old_enough: None
) -> None:
    repo = make_repo()
    for index in range(5):
        repo.write_job(f"job-{index}", labels={"team": "evals"})
    first, before = scan_repo(repo.paths), _parsed()
    again = scan_repo(repo.paths)
    assert _parsed() == before  # the YAML of five unchanged files: none parsed again
    assert again.problems == [] and again.repo.jobs.keys() == first.repo.jobs.keys()
    assert all(again.repo.jobs[n].job == first.repo.jobs[n].job for n in first.repo.jobs)
    assert again.repo.jobs["job-0"].line == 1

    spec = repo.path("specs/job-2.yaml")
    time.sleep(0.05)  # a later tick of the filesystem's clock
    spec.write_text(spec.read_text().replace("evals", "search"))
    changed = scan_repo(repo.paths)
    assert _parsed() == before + 1
    assert changed.repo.jobs["job-2"].job.metadata.labels == {"team": "search"}


def test_a_problem_found_in_a_spec_read_from_the_cache_still_names_its_line(
    make_repo: MakeRepo, old_enough: None
) -> None:
    repo = make_repo()
    repo.write_input("data/nightly-eval.jsonl")
    repo.write_spec("specs/a.yaml", "# first\n# second\n" + _job_text("nightly-eval"))
    assert scan_repo(repo.paths).problems == []
    repo.write_spec("specs/b.yaml", _job_text("nightly-eval"))
    before = _parsed()
    problems = [str(problem) for problem in scan_repo(repo.paths).problems]
    assert _parsed() == before + 1  # b.yaml only: a.yaml came from the cache
    assert any(p.startswith("specs/a.yaml:6: metadata.name: duplicate BatchJob name") for p in problems)
    assert any(p.startswith("specs/b.yaml:4: metadata.name: duplicate BatchJob name") for p in problems)


def test_a_cache_that_does_not_validate_or_does_not_parse_is_not_believed(
    make_repo: MakeRepo, old_enough: None
) -> None:
    repo = make_repo()
    repo.write_job("nightly-eval")
    assert scan_repo(repo.paths).problems == []
    cache = repo.state.parent / loader.DISK_CACHE_NAME
    header, line = cache.read_text().splitlines()
    key, _, data = line.partition("\t")
    cache.write_text(f"{header}\n{key}\t{data.replace('nightly-eval', 'Not A Name!')}")
    before = _parsed()
    scan = scan_repo(repo.paths)
    assert scan.problems == [] and list(scan.repo.jobs) == ["nightly-eval"]
    assert _parsed() == before + 1  # the kept data no longer validates: the file is parsed

    cache.write_bytes(b"\x00garbage")
    assert list(scan_repo(repo.paths).repo.jobs) == ["nightly-eval"]


def test_nothing_is_kept_for_a_repo_with_a_problem(make_repo: MakeRepo, old_enough: None) -> None:
    repo = make_repo()
    repo.write_job("nightly-eval", provider="nowhere")
    assert scan_repo(repo.paths).problems != []
    assert not (repo.state.parent / loader.DISK_CACHE_NAME).exists()


def _job_text(name: str) -> str:
    return (
        "apiVersion: reconciler/v1\nkind: BatchJob\nmetadata:\n"
        f"  name: {name}\nspec:\n  endpoint: /v1/chat/completions\n  input: ../data/{name}.jsonl\n"
    )
