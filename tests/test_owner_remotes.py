"""One repository, one owner id, whatever URL form git was given (`git help clone`, GIT URLS).

A CI runner cloning over https and a daemon over ssh must see the same batches as theirs; a
different id would double every generation.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.specs.identity import normalise_remote, resolve_owner

SAME_REPO = [
    # scp-like
    "git@github.com:acme/evals.git",
    "git@github.com:acme/evals",
    "github.com:acme/evals.git",
    "git@github.com:/acme/evals.git",
    "git@GitHub.com:acme/evals.git/",
    # ssh, with and without user and port
    "ssh://git@github.com/acme/evals.git",
    "ssh://git@github.com:22/acme/evals.git",
    "ssh://github.com/acme/evals",
    "ssh://git@github.com:2222/acme/evals.git",
    "git+ssh://git@github.com/acme/evals.git",
    "ssh+git://git@github.com/acme/evals",
    # http(s), with credentials, default and explicit ports, trailing slashes
    "https://github.com/acme/evals",
    "https://github.com/acme/evals.git",
    "https://github.com/acme/evals/",
    "https://github.com/acme/evals.git/",
    "https://github.com:443/acme/evals",
    "https://token@github.com/acme/evals",
    "https://user:secret@github.com:443/acme/evals.git",
    "http://github.com:80/acme/evals",
    "HTTPS://GITHUB.COM/acme/evals",
    "https://github.com//acme//evals",
    # git and ftp transports
    "git://github.com/acme/evals.git",
    "git://github.com:9418/acme/evals.git",
    "ftps://github.com/acme/evals.git",
]


@pytest.mark.parametrize("url", SAME_REPO)
def test_every_form_of_one_remote_gives_one_owner_id(url: str) -> None:
    assert normalise_remote(url) == "github.com/acme/evals"


@pytest.mark.parametrize(
    ("url", "owner"),
    [
        ("ssh://git@gitlab.example.com:2222/acme/evals.git", "gitlab.example.com/acme/evals"),
        ("https://gitlab.example.com/acme/evals", "gitlab.example.com/acme/evals"),
        ("https://gitlab.example.com/group/sub/evals.git", "gitlab.example.com/group/sub/evals"),
        ("ssh://git@host.xz/~alice/evals.git", "host.xz/~alice/evals"),
        ("git@host.xz:~alice/evals.git", "host.xz/~alice/evals"),
        ("ssh://git@[2001:db8::1]:2222/acme/evals.git", "2001:db8::1/acme/evals"),
        ("git@[2001:db8::1]:acme/evals.git", "2001:db8::1/acme/evals"),
    ],
)
def test_ports_users_and_ipv6_brackets_do_not_split_an_owner(url: str, owner: str) -> None:
    assert normalise_remote(url) == owner


@pytest.mark.parametrize(
    "url",
    [
        "/srv/git/evals.git",
        "./evals",
        "../evals.git",
        "file:///srv/git/evals.git",
        "FILE:///srv/git/evals.git",
        "C:\\repos\\evals",
        "C:/repos/evals",
        "",
        "https://github.com/",
        "git@github.com:",
    ],
)
def test_local_paths_and_empty_remotes_are_not_owners(url: str) -> None:
    assert normalise_remote(url) is None


def test_two_clones_over_different_transports_resolve_to_the_same_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILER_OWNER", raising=False)
    owners = []
    for name, remote in (
        ("https", "https://github.com:443/acme/evals"),
        ("ssh", "git@github.com:acme/evals.git"),
    ):
        checkout = tmp_path / name
        checkout.mkdir()
        subprocess.run(["git", "init", "-q", str(checkout)], check=True)
        subprocess.run(["git", "-C", str(checkout), "remote", "add", "origin", remote], check=True)
        owners.append(resolve_owner(checkout))
    assert owners == ["github.com/acme/evals", "github.com/acme/evals"]
