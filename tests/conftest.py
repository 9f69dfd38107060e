import pytest

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.gateway",
    "tests.fixtures.repo",
    "tests.events_helpers",
]


@pytest.fixture(autouse=True)
def _no_ambient_reconciler_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings in the developer's shell must not leak into tests.
    monkeypatch.delenv("RECONCILER_OWNER", raising=False)
    monkeypatch.delenv("RECONCILER_SANDBOX_URL", raising=False)
