"""Which replica runs the passes: the one the state backend's leadership guard lets lead.

The daemon asks its backend for the guard (`StateBackend.leadership`) and never looks at where
the state is.  `reconcile --watch` against a database may run as several replicas.  Before each
pass a replica makes sure it leads (state/postgres.LeaderLock); a standby checks again every
half second.  A killed leader's lock goes when the server sees its connection close, so a
standby leads within a second; a leader whose host loses its network is dropped by the server
after about postgres.UNANSWERED_SECONDS of silence (keepalives and a TCP user timeout the
session asks for), so a standby leads some 10 to 15 seconds after the cut, and the old leader,
its calls failing after as long, steps down by itself.  On a state file there is one daemon per
file (state/file.DaemonLock), always leading.
"""

from __future__ import annotations

from reconciler.daemon.metrics import Metrics
from reconciler.engine.events import EventLog
from reconciler.state.backend import Leadership

STANDBY_POLL_SECONDS = 0.5
COMMAND = "reconciler reconcile --watch"


class Role:
    def __init__(self, lock: Leadership | None, log: EventLog, metrics: Metrics) -> None:
        self.lock, self.log, self.metrics = lock, log, metrics
        self.name = "leader" if lock is None or lock.always_leads else "starting"
        self._named_leader = False  # "standing by: X leads" said since the role last changed
        self._set_gauge()

    def leads(self) -> bool:
        """Whether this replica may run a pass now; says so when that changes."""
        if self.lock is None or self.lock.always_leads:
            return True
        was = self.name
        try:
            leading = self.lock.try_lead(COMMAND)
        except Exception as error:
            if was == "leader":  # the database is out of reach: so is the lock, soon if not yet
                self.log.warning(
                    "stepped_down", f"lost the leader lock ({error}): standing by", role="standby"
                )
            self._become("standby")
            self._named_leader = False  # once the database answers again, say who leads
            raise
        if leading and was != "leader":
            self.log.info("leading", "leading: this replica runs the passes now", role="leader")
        if not leading and was == "leader":
            self.log.warning("stepped_down", "lost the leader lock: standing by", role="standby")
        elif not leading and not self._named_leader:
            self.log.info("standby", f"standing by: {self.lock.holder()} leads", role="standby")
        self._named_leader = not leading
        self._become("leader" if leading else "standby")
        return leading

    def _become(self, name: str) -> None:
        self.name = name
        self._set_gauge()

    def _set_gauge(self) -> None:
        self.metrics.leader.set(1 if self.name == "leader" else 0)
