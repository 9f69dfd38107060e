import pytest

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.gateway",
    "tests.fixtures.repo",
    "tests.events_helpers",
    "tests.fixtures.daemon",
    "tests.fixtures.postgres",
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests first, so parallel workers do not end waiting on one of them: those marked
    `slow`, then the property-based ones (Hypothesis runs dozens of examples each)."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is not None:
            return 0
        function = getattr(item, "function", None)
        return 1 if getattr(function, "is_hypothesis_test", False) else 2

    items.sort(key=rank)
