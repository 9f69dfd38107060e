import pytest

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.gateway",
    "tests.fixtures.repo",
    "tests.events_helpers",
    "tests.fixtures.daemon",
    "tests.fixtures.postgres",
    "tests.lanes",
    "pytester",  # tests/test_lanes.py runs pytest on a sample suite
]


@pytest.fixture(autouse=True)
def _no_ambient_reconciler_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Settings in the developer's shell must not leak into tests.
    monkeypatch.delenv("RECONCILER_OWNER", raising=False)
    monkeypatch.delenv("RECONCILER_SANDBOX_URL", raising=False)
    monkeypatch.delenv("RECONCILER_STATE_URL", raising=False)
    # The owner lock lives in the per-user runtime folder: one per test, so tests running in
    # parallel with the same owner id do not wait on each other.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
