"""The dashboard in a real browser: Playwright driving Debian's chromium (.ci/run installs it).

The page lists the jobs, a running job's bar is as wide as its counts say, the page follows a
batch to its end without reloading, and text from specs (names, labels) and the state is shown
as text.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest

from reconciler.sandbox import Sandbox
from tests.events_helpers import Daemon, statuses
from tests.fixtures.repo import UserRepo

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROW = "#board tr[data-job='{}']"


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1100, "height": 560},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


class BarReading(TypedDict):
    share: float
    done: float
    total: float
    text: str


def _bar(page: Any, job: str) -> BarReading:
    """The bar's drawn share and the counts beside it, read in one go from the same render."""
    script = """(selector) => {
        const bar = document.querySelector(selector + " .bar");
        const fill = bar.querySelector(".fill");
        return {share: fill.getBoundingClientRect().width / bar.getBoundingClientRect().width,
                done: Number(bar.dataset.done), total: Number(bar.dataset.total),
                text: document.querySelector(selector + " .counts").textContent};
    }"""
    result: BarReading = page.evaluate(script, ROW.format(job))
    return result


def test_the_dashboard_shows_progress_and_follows_a_batch_to_its_end_without_reloading(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
    browser_page: Any,
    tmp_path: Path,
) -> None:
    sandbox, repo, page = sandbox_factory(), make_repo(), browser_page
    repo.write_job("weekly-report")
    daemon = events_daemon(repo, sandbox)
    sandbox.configure(requests_per_second=1.0)  # 8 requests: some seconds in progress
    repo.write_job("nightly-eval", requests=8)
    navigations: list[str] = []
    page.goto(daemon.url + "/")
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    running = ROW.format("nightly-eval") + " .bar"
    page.wait_for_function(
        f"() => {{ const b = document.querySelector({json.dumps(running)});"
        " return b && Number(b.dataset.done) > 0 && Number(b.dataset.done) < Number(b.dataset.total); }",
        timeout=30_000,
    )
    bar = _bar(page, "nightly-eval")
    assert bar["text"] == f"{bar['done']:g}/{bar['total']:g}" and bar["total"] == 8
    assert abs(bar["share"] - bar["done"] / bar["total"]) < 0.01
    assert page.locator("#board tr[data-job]").all_inner_texts()[0].startswith("nightly-eval")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    if target := os.environ.get("RECONCILER_DASHBOARD_SCREENSHOT"):  # to refresh docs/dashboard.png
        shutil.copyfile(tmp_path / "dashboard.png", target)

    page.evaluate("window.__kept = 42")
    page.wait_for_selector(ROW.format("nightly-eval") + " .status.completed", timeout=30_000)
    assert page.evaluate("window.__kept") == 42 and navigations == []  # updated in place
    assert _bar(page, "nightly-eval")["share"] == pytest.approx(1.0, abs=0.01)
    assert page.inner_text(ROW.format("weekly-report") + " .status") == "completed"

    page.click(f"{ROW.format('nightly-eval')} a")
    page.wait_for_selector("h2:has-text('Batches')")
    assert page.locator("#board code").filter(has_text="batch_").count() == 1
    page.screenshot(path=str(tmp_path / "dashboard-job.png"), full_page=True)


def test_names_and_messages_with_markup_are_shown_as_text(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
    browser_page: Any,
    tmp_path: Path,
) -> None:
    sandbox, repo, page = sandbox_factory(), make_repo(), browser_page
    hostile = "<script>window.__pwned=1</script>"
    repo.state.parent.mkdir(parents=True)
    job = {
        "generation": "g1",
        "provider": "sandbox",
        "status": "completed",
        "request_counts": {"total": 2, "completed": 2, "failed": 0},
    }
    repo.state.write_text(json.dumps({"lineage": "seeded", "jobs": {hostile: job}}))
    repo.write_spec(
        "specs/broken.yaml",
        """
        apiVersion: reconciler/v1
        kind: BatchJob
        metadata: {name: '<img src=x onerror=window.__pwned=2>'}
        spec: {endpoint: /v1/chat/completions, input: ../data/x.jsonl}
        """,
    )
    label = "'\"><script>window.__pwned=3</script>"
    repo.write_job("labelled", labels={"team": label})
    daemon = events_daemon(repo, sandbox)
    daemon.eventually(lambda: "labelled" in statuses(repo))
    page.goto(daemon.url + "/")

    assert page.locator("#board tr[data-job]").count() == 2  # the seeded job, and `labelled`
    row = page.locator(f"#board tr[data-job={json.dumps(hostile)}]")
    assert row.locator("a").inner_text() == hostile
    assert row.locator(".sync").inner_text() == "unknown: spec invalid"  # as `status` says it
    assert "<img src=x onerror=window.__pwned=2>" in page.inner_text("#board .errors")
    assert page.locator("#board script, #board img").count() == 0
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=str(tmp_path / "dashboard-escaped.png"), full_page=True)
    row.locator("a").click()
    page.wait_for_selector("h1")
    assert page.inner_text("h1") == hostile
    assert page.evaluate("window.__pwned") is None
    page.goto(daemon.url + "/jobs/labelled")
    assert page.inner_text("#board .labels") == f"team={label}"
    assert page.locator("#board script").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_a_scheduled_job_shows_its_current_and_next_run_and_its_run_history(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    repo.write_job("nightly-eval", schedule="0 2 * * *", timezone="Europe/Berlin")
    daemon = events_daemon(repo, sandbox, env={"RECONCILER_NOW": "2026-12-01T02:05:00+01:00"})
    daemon.eventually(lambda: "completed" in httpx.get(daemon.url + "/jobs/nightly-eval", timeout=10).text)
    overview = httpx.get(daemon.url + "/", timeout=10).text
    assert "<th class=wide>Run</th><th class=wide>Next run</th>" in overview
    assert "2026-12-01T02:00:00+01:00</td>" in overview  # the current run, in the schedule's zone
    assert "2026-12-02T02:00:00+01:00</td>" in overview  # the next slot
    job = httpx.get(daemon.url + "/jobs/nightly-eval", timeout=10).text
    assert "<h2>Runs</h2>" in job and "<td>2026-12-01T01:00:00Z</td>" in job
