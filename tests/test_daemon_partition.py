"""A leader cut off from the network: a standby leads within seconds, the old leader stops.

Two `reconcile --watch` replicas share a PostgreSQL state. The leader runs in a network
namespace of its own (its host), reaching the database and the sandbox through a router
namespace; the standby runs beside the database. The router then drops every packet between
the leader's host and the rest, both ways, closing nothing: what a pulled cable or a dead
switch does. Nobody gets a FIN or a RST; only timeouts can tell. A SIGKILL (the replicas
test) is the easy case: the server sees the connection close at once.

Before, the server kept the cut-off leader's session, and with it the leader lock, until its
own keepalive gave up (two hours by the kernel's default), and the old leader waited in a
database call for the retransmissions to end (about 15 minutes). Now every connection asks
the server for keepalives and a TCP user timeout of its own (state/database.py), so the
server drops the dead session within seconds; the test bounds the handover by a few times
that, far below the two hours, and prints what it measured.

The old leader must find out on its own, while still cut off, that it no longer leads; after
the network is back it stands by, and no state version after the new leader's first is its.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.sandbox import Sandbox, SandboxConfig, start_sandbox
from reconciler.state.database import UNANSWERED_SECONDS
from tests.fixtures.postgres import StateDb, new_database, running_server
from tests.fixtures.repo import MakeRepo
from tests.fixtures.sandbox import FAST_KNOBS, cli_env
from tests.reconcile_helpers import batches, wait_until

pytestmark = pytest.mark.slow

OWNER = "tests/partition"
JOBS = 3
# Far above what the settings allow (the server drops a silent peer after about
# UNANSWERED_SECONDS, a standby tries every half second), far below the kernel's two hours.
TAKEOVER_BOUND = 6 * UNANSWERED_SECONDS


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Network:
    """The leader's host (a namespace), a router between it and this one, and their addresses."""

    host: str
    router: str
    leader_ip: str  # on the leader's host
    server_ip: str  # here: the database and the sandbox listen on it

    def inside(self, command: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.host, *command]

    def cut(self) -> None:
        """Every packet between the two dropped at the router, silently, both ways."""
        for address in (self.leader_ip, self.server_ip):
            ip("netns", "exec", self.router, "ip", "route", "add", "blackhole", f"{address}/32")

    def heal(self) -> None:
        for address in (self.leader_ip, self.server_ip):
            ip("netns", "exec", self.router, "ip", "route", "del", "blackhole", f"{address}/32")


def _build(k: int) -> Network:
    host, router = f"rcl{k}", f"rcr{k}"
    leader_side, server_side = f"10.233.{k}", f"10.234.{k}"
    ip("netns", "add", host)  # fails when another worker has this k: the caller tries the next
    try:
        ip("netns", "add", router)
        ip("link", "add", f"rcla{k}", "type", "veth", "peer", "name", f"rcra{k}")
        ip("link", "add", f"rchb{k}", "type", "veth", "peer", "name", f"rcrb{k}")
        ip("link", "set", f"rcla{k}", "netns", host)
        ip("link", "set", f"rcra{k}", "netns", router)
        ip("link", "set", f"rcrb{k}", "netns", router)
        for ns, device, address in (
            (host, f"rcla{k}", f"{leader_side}.2/24"),
            (router, f"rcra{k}", f"{leader_side}.1/24"),
            (router, f"rcrb{k}", f"{server_side}.1/24"),
        ):
            ip("-n", ns, "addr", "add", address, "dev", device)
            ip("-n", ns, "link", "set", device, "up")
        ip("-n", host, "link", "set", "lo", "up")
        ip("-n", host, "route", "add", "default", "via", f"{leader_side}.1")
        ip("netns", "exec", router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        ip("addr", "add", f"{server_side}.2/24", "dev", f"rchb{k}")
        ip("link", "set", f"rchb{k}", "up")
        ip("route", "add", f"{leader_side}.0/24", "via", f"{server_side}.1")
    except BaseException:
        _remove(host, router)
        raise
    return Network(host, router, f"{leader_side}.2", f"{server_side}.2")


def _remove(host: str, router: str) -> None:
    for ns in (host, router):  # a namespace takes its veths, their peers and routes with it
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def network() -> Iterator[Network]:
    start = os.getpid() % 200 + 20
    for k in itertools.chain(range(start, 250), range(20, start)):
        try:
            built = _build(k)
        except subprocess.CalledProcessError as error:
            if b"File exists" in error.stderr:
                continue
            pytest.fail(f"cannot make network namespaces (root and iproute2 needed): {error.stderr!r}")
        break
    else:
        pytest.fail("no free network namespace name")
    yield built
    _remove(built.host, built.router)


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def said_since(self, text: str, mark: int) -> bool:
        return text in self.log()[mark:]


@dataclass(frozen=True)
class Cluster:
    network: Network
    db: StateDb
    sandbox: Sandbox
    leader: Replica
    standby: Replica


@pytest.fixture
def cluster(network: Network, make_repo: MakeRepo, tmp_path: Path) -> Iterator[Cluster]:
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            running_server(
                ["127.0.0.1", network.server_ip], [f"{network.leader_ip}/32", f"{network.server_ip}/32"]
            )
        )
        db = stack.enter_context(new_database(server, host=network.server_ip))
        config = SandboxConfig(**{**FAST_KNOBS, "validation_seconds": 3.0})
        sandbox = start_sandbox(tmp_path / "sandbox", config, host=network.server_ip)
        stack.callback(sandbox.stop)
        seed = make_repo("seed")
        for index in range(JOBS):
            seed.write_job(f"job-{index}", requests=4)
        started: list[Replica] = []

        def start(name: str, wrap: list[str]) -> Replica:
            checkout = tmp_path / name
            shutil.copytree(seed.root, checkout)
            env = cli_env() | {
                "RECONCILER_SANDBOX_URL": sandbox.base_url,
                "RECONCILER_OWNER": OWNER,
                "RECONCILER_STATE_URL": db.url,
                "XDG_RUNTIME_DIR": str(tmp_path / f"runtime-{name}"),  # two machines
            }
            command = [sys.executable, "-m", "reconciler", "reconcile", "--watch", "--repo", str(checkout)]
            log_file = tmp_path / f"{name}.log"
            with log_file.open("wb") as stderr:
                process = subprocess.Popen(
                    [*wrap, *command, "--interval", "0.5"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=env,
                )
            started.append(Replica(process, log_file))
            return started[-1]

        def stop_all() -> None:
            for replica in started:
                if replica.process.poll() is None:
                    replica.process.kill()
                    replica.process.wait(timeout=15)

        stack.callback(stop_all)
        leader = start("cut-off", network.inside([]))
        wait_until(lambda: "leading:" in leader.log(), timeout=60)
        standby = start("beside-the-database", [])
        wait_until(lambda: "standing by:" in standby.log(), timeout=60)
        yield Cluster(network, db, sandbox, leader, standby)


def writers(db: StateDb) -> list[tuple[int, str]]:
    """(serial, written_by) of every kept version, oldest first."""
    rows = db.query("SELECT serial, written_by FROM reconciler_state_versions ORDER BY serial")
    return [(int(str(serial)), str(by)) for serial, by in rows]


def by(replica: Replica) -> str:
    return f"(pid {replica.process.pid} on "


def test_a_leader_cut_off_from_the_network_is_replaced_within_seconds_and_stops_writing(
    cluster: Cluster,
) -> None:
    old, new = cluster.leader, cluster.standby
    wait_until(lambda: sum(by(old) in w for _, w in writers(cluster.db)) >= 3, timeout=60)
    marks = len(old.log()), len(new.log())

    cluster.network.cut()
    cut_at = time.monotonic()
    while not new.said_since("leading:", marks[1]):
        took = time.monotonic() - cut_at
        assert took < TAKEOVER_BOUND, f"no new leader {took:.0f}s after the cut:\n{new.log()[-3000:]}"
        assert new.process.poll() is None, new.log()
        time.sleep(0.05)
    took = time.monotonic() - cut_at
    print(f"\nthe standby led {took:.1f}s after the leader's host was cut off")

    # Still cut off, the old leader finds out by itself that it no longer leads.
    wait_until(lambda: old.said_since("lost the leader lock", marks[0]), timeout=TAKEOVER_BOUND)
    noticed = time.monotonic() - cut_at
    print(f"the old leader stepped down {noticed:.1f}s after the cut")
    wait_until(lambda: any(by(new) in w for _, w in writers(cluster.db)), timeout=TAKEOVER_BOUND)
    first_of_new = min(serial for serial, w in writers(cluster.db) if by(new) in w)

    cluster.network.heal()
    healed = len(old.log())
    wait_until(lambda: old.said_since("standing by:", healed), timeout=TAKEOVER_BOUND)
    written_after = [w for serial, w in writers(cluster.db) if serial >= first_of_new]
    assert written_after and all(by(new) in w for w in written_after), written_after
    assert "leading:" not in old.log()[healed:]

    units = Counter(
        (b.metadata["reconciler_job"], b.metadata["reconciler_generation"], b.metadata["reconciler_part"])
        for b in batches(cluster.sandbox)
    )
    assert len(units) == JOBS and max(units.values()) == 1, units
    for replica in (old, new):
        assert cluster.db.password not in replica.log()
        assert not re.search(r"Traceback", replica.log())
