"""The input cache: an unchanged input (same inode, size, mtime and ctime) is not read again."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from reconciler.common.errors import SpecError
from reconciler.common.limits import InputLimits
from reconciler.specs.inputs.cache import CACHE_NAME, digest_repo
from reconciler.specs.loader import load_repo
from tests.fixtures.repo import RunCli, UserRepo, request_lines


def cache_file(repo: UserRepo) -> Path:
    return repo.state.parent / CACHE_NAME


def rewrite_keeping_size_and_mtime(path: Path, old: str, new: str) -> None:
    """Same length, same mtime: only reading the bytes again could notice the change."""
    stat = path.stat()
    content = path.read_text(encoding="utf-8")
    assert len(old) == len(new) and old in content
    path.write_text(content.replace(old, new), encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def repo(user_repo: UserRepo) -> UserRepo:
    return user_repo


def test_an_unchanged_input_is_served_from_the_cache(repo: UserRepo) -> None:
    digest_repo(load_repo(repo.paths), repo.paths)
    document = json.loads(cache_file(repo).read_text())
    for entry in document["inputs"].values():
        entry["sha256"] = "0" * 64
    cache_file(repo).write_text(json.dumps(document))
    again = digest_repo(load_repo(repo.paths), repo.paths)["nightly-eval"]
    assert again.sha256 == "0" * 64  # the cached answer proves the file was not read


def test_an_edit_keeping_size_and_mtime_is_read_again(repo: UserRepo) -> None:
    """Issue 15, item 9: the inode change time moves even when size and mtime are put back."""
    first = digest_repo(load_repo(repo.paths), repo.paths)["nightly-eval"]
    path = repo.data / "nightly-eval.jsonl"
    rewrite_keeping_size_and_mtime(path, "req-00001", "req-0000X")
    again = digest_repo(load_repo(repo.paths), repo.paths)["nightly-eval"]
    assert again.sha256 == sha256_of(path) != first.sha256


def test_a_touched_input_is_read_again(repo: UserRepo) -> None:
    digest_repo(load_repo(repo.paths), repo.paths)
    path = repo.data / "nightly-eval.jsonl"
    rewrite_keeping_size_and_mtime(path, "req-00001", "req-0000X")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert digest_repo(load_repo(repo.paths), repo.paths)["nightly-eval"].sha256 == sha256_of(path)


def test_without_cache_the_file_is_read_and_nothing_is_written(repo: UserRepo) -> None:
    digest_repo(load_repo(repo.paths), repo.paths)
    before = cache_file(repo).read_bytes()
    path = repo.data / "nightly-eval.jsonl"
    rewrite_keeping_size_and_mtime(path, "req-00001", "req-0000X")
    fresh = digest_repo(load_repo(repo.paths), repo.paths, cache=False)["nightly-eval"]
    assert fresh.sha256 == sha256_of(path)
    assert cache_file(repo).read_bytes() == before


def test_the_cache_is_keyed_by_endpoint_too(repo: UserRepo) -> None:
    digest_repo(load_repo(repo.paths), repo.paths)
    spec = repo.specs / "nightly-eval.yaml"
    spec.write_text(spec.read_text().replace("/v1/chat/completions", "/v1/embeddings"))
    with pytest.raises(SpecError, match="url: must be the job's endpoint /v1/embeddings"):
        digest_repo(load_repo(repo.paths), repo.paths)


def test_the_cache_is_keyed_by_limits_too(repo: UserRepo) -> None:
    digest_repo(load_repo(repo.paths), repo.paths)
    with pytest.raises(SpecError, match="3 requests; a batch may have at most 2"):
        digest_repo(load_repo(repo.paths), repo.paths, limits=InputLimits(max_requests=2))


def test_a_damaged_cache_is_ignored_and_rewritten(repo: UserRepo) -> None:
    cache_file(repo).parent.mkdir(parents=True)
    cache_file(repo).write_text('{"format_version": 1, "inputs": {"x": {"sha256": 1}}')
    digest = digest_repo(load_repo(repo.paths), repo.paths)["nightly-eval"]
    stored = json.loads(cache_file(repo).read_text())
    assert [entry["sha256"] for entry in stored["inputs"].values()] == [digest.sha256]


def test_the_cache_is_not_written_when_an_input_is_invalid(repo: UserRepo) -> None:
    repo.write_job("broken", endpoint="/v1/embeddings")
    repo.write_input("data/broken.jsonl", lines=["{"])
    with pytest.raises(SpecError):
        digest_repo(load_repo(repo.paths), repo.paths)
    assert not repo.state.parent.exists()


def test_entries_of_inputs_no_longer_used_are_dropped(repo: UserRepo) -> None:
    repo.write_job("other", requests=2)
    digest_repo(load_repo(repo.paths), repo.paths)
    (repo.specs / "other.yaml").unlink()
    digest_repo(load_repo(repo.paths), repo.paths)
    stored = json.loads(cache_file(repo).read_text())
    assert [json.loads(key)[0] for key in stored["inputs"]] == [str(repo.data / "nightly-eval.jsonl")]


def test_two_jobs_sharing_an_input_get_the_same_digest(repo: UserRepo) -> None:
    repo.write_job("copy", input="data/nightly-eval.jsonl")
    digests = digest_repo(load_repo(repo.paths), repo.paths)
    assert digests["copy"] == digests["nightly-eval"]
    assert digests["copy"].requests == 3


def test_validate_leaves_the_cache_beside_the_state_file(
    repo: UserRepo, run_cli: RunCli, tmp_path: Path
) -> None:
    state = tmp_path / "elsewhere" / "state.json"
    result = run_cli("validate", *repo.args("--state", str(state)))
    assert result.exit_code == 0, result.stderr
    assert (state.parent / CACHE_NAME).is_file()
    assert not state.exists()  # validate records no state
    assert repo.written() == []


def test_cached_and_fresh_digests_agree(repo: UserRepo) -> None:
    repo.write_input("data/big.jsonl", lines=request_lines(500))
    repo.write_job("big", input="data/big.jsonl")
    fresh = digest_repo(load_repo(repo.paths), repo.paths, cache=False)
    digest_repo(load_repo(repo.paths), repo.paths)
    assert digest_repo(load_repo(repo.paths), repo.paths) == fresh
