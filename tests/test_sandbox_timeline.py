"""Where a batch is at any instant, computed from its record alone: exact, no sleeping."""

from __future__ import annotations

import pytest

from reconciler.common.errors import UserError
from reconciler.engine.embedded_sandbox import embedded_config
from reconciler.sandbox.disk import BatchErrorItem, BatchRecord, CancelRequest, Timeline, Validation
from reconciler.sandbox.lifecycle import batch_json, moment, needs_validation, request_counts

T0 = 1_800_000_000.0


def record(
    total: int = 10, failing: tuple[int, ...] = (), expiry: float = 100.0, **extra: object
) -> BatchRecord:
    timeline = Timeline(
        validation_seconds=1, requests_per_second=2, finalizing_seconds=1, expiry_seconds=expiry
    )
    fields: dict[str, object] = {
        "id": "batch_x",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-x",
        "completion_window": "24h",
        "created": T0,
        "timeline": timeline,
        "validation": Validation(total=total, model="gpt-4o", failing=failing),
        **extra,
    }
    return BatchRecord.model_validate(fields)


@pytest.mark.parametrize(
    ("after", "status", "answered"),
    [
        (0.5, "validating", 0),
        (1.0, "in_progress", 0),
        (3.6, "in_progress", 5),
        (6.0, "finalizing", 10),
        (7.0, "completed", 10),
    ],
)
def test_the_timeline_of_ten_requests_at_two_per_second(after: float, status: str, answered: int) -> None:
    now = moment(record(), T0 + after)
    assert (now.status, now.processed) == (status, answered)


def test_counts_split_answered_requests_into_completed_and_failed() -> None:
    batch = record(failing=(1, 7))
    assert request_counts(batch, moment(batch, T0 + 3.6)) == {"total": 10, "completed": 4, "failed": 1}
    assert request_counts(batch, moment(batch, T0 + 7)) == {"total": 10, "completed": 8, "failed": 2}


def test_expiry_mid_run_counts_the_unanswered_as_failed() -> None:
    batch = record(expiry=3.0)  # 2 s of work done when the window closes: 4 answered
    now = moment(batch, T0 + 50)
    assert (now.status, now.processed, now.events["expired"]) == ("expired", 4, T0 + 3)
    assert request_counts(batch, now) == {"total": 10, "completed": 4, "failed": 6}


def test_expiry_before_validation_ends_expired_without_validating() -> None:
    batch = record(expiry=0.5).model_copy(update={"validation": None})
    assert moment(batch, T0 + 2).status == "expired"
    assert not needs_validation(batch, T0 + 2)


def test_cancel_freezes_the_answered_count_and_ends_after_its_delay() -> None:
    batch = record(cancel=CancelRequest(at=T0 + 2.0, seconds=5.0))
    assert (moment(batch, T0 + 3).status, moment(batch, T0 + 3).processed) == ("cancelling", 2)
    ended = moment(batch, T0 + 7)
    assert (ended.status, ended.processed, ended.events["cancelled"]) == ("cancelled", 2, T0 + 7)


def test_a_failed_validation_shows_errors_and_no_progress() -> None:
    errors = (BatchErrorItem(code="invalid_json_line", message="bad", line=3),)
    batch = record().model_copy(update={"validation": Validation(errors=errors)})
    shown = batch_json(batch, moment(batch, T0 + 5))
    assert shown["status"] == "failed" and shown["failed_at"] == int(T0 + 1)
    assert shown["errors"] == {
        "object": "list",
        "data": [{"code": "invalid_json_line", "message": "bad", "param": None, "line": 3}],
    }
    assert shown["in_progress_at"] is None and shown["request_counts"]["total"] == 0


def test_every_timestamp_field_is_present_even_when_null() -> None:
    shown = batch_json(record(), moment(record(), T0 + 0.1))
    for name in (
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
    ):
        assert name in shown and shown[name] is None
    assert shown["expires_at"] == int(T0 + 100)


def test_embedded_knobs_come_from_the_environment_and_bad_ones_are_one_line() -> None:
    assert embedded_config({"RECONCILER_SANDBOX": '{"validation_seconds": 0.1}'}).validation_seconds == 0.1
    assert embedded_config({}).validation_seconds == 1.0
    for bad in ("{", '{"fault_rate": 3}', '{"speed": 1}', "[1]"):
        with pytest.raises(UserError) as raised:
            embedded_config({"RECONCILER_SANDBOX": bad})
        assert "RECONCILER_SANDBOX" in str(raised.value) and "\n" not in str(raised.value)
