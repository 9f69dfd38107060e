"""The create protocol's rules as data: an intent's states, the moves between them, its key, the
quarantine, and the run choice the plan is handed (pure; the effects over real HTTP are in
tests/test_intent_protocol.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.api.batch import Batch
from reconciler.common.errors import StateError
from reconciler.engine.apply.intents import in_flight
from reconciler.plans.changes import Action, DesiredJob, LiveBatch, PlanContext
from reconciler.plans.decide import make_plan
from reconciler.plans.record import with_intents
from reconciler.plans.runs import RunChoice, choose_run, choose_runs
from reconciler.state.document import parse_state
from reconciler.state.model import (
    TRANSITIONS,
    IntentKey,
    IntentState,
    JobState,
    PendingCreate,
    State,
    unresolved,
)

JOB = DesiredJob(name="eval", generation="a" * 16, provider="sandbox", requests=3)
KEY = IntentKey.of(JOB.name, JOB.generation, "nightly", 0, 1)
SENT_AT = 1_800_000_000


def intent_in(state: IntentState, attempt: str = "a1") -> PendingCreate:
    """An intent of KEY in `state`, with the fields that state has."""
    fields: dict[str, Any] = {}
    if state in (IntentState.UPLOADED, IntentState.SENT, IntentState.QUARANTINED):
        fields["input_file_id"] = "file-1"
    if state in (IntentState.SENT, IntentState.QUARANTINED):
        fields["sent_at"] = SENT_AT
    planned = PendingCreate.planned(attempt, KEY, requests=3)
    return planned.model_copy(update={"state": state, **fields})


def move(intent: PendingCreate, step: str) -> PendingCreate:
    moves = {
        "uploaded": lambda: intent.uploaded("file-2"),
        "sent": lambda: intent.sent(SENT_AT + 5),
        "quarantined": intent.quarantined,
        "refused": intent.refused,
        "resolved": intent.resolved,
    }
    return moves[step]()


def live(
    attempt: str, job: str = JOB.name, generation: str = JOB.generation, run: str = "nightly"
) -> LiveBatch:
    metadata = {
        "reconciler_job": job,
        "reconciler_generation": generation,
        "reconciler_run": run,
        "reconciler_attempt": attempt,
    }
    return LiveBatch.of("sandbox", Batch(id=f"batch_{attempt}", status="validating", metadata=metadata))


def test_an_intent_goes_planned_uploaded_sent_and_each_step_adds_what_the_next_pass_needs() -> None:
    planned = PendingCreate.planned("a1", KEY, requests=3)
    assert (planned.state, planned.input_file_id, planned.sent_at) == (IntentState.PLANNED, None, None)
    uploaded = planned.uploaded("file-1")
    assert (uploaded.state, uploaded.input_file_id, uploaded.sent_at) == (
        IntentState.UPLOADED,
        "file-1",
        None,
    )
    sent = uploaded.sent(SENT_AT)
    assert (sent.state, sent.input_file_id, sent.sent_at) == (IntentState.SENT, "file-1", SENT_AT)
    assert sent.quarantined().state is IntentState.QUARANTINED and sent.quarantined().sent_at == SENT_AT
    refused = sent.refused()  # an error answer: nothing in flight, its upload kept for the next send
    assert (refused.state, refused.input_file_id, refused.sent_at) == (IntentState.UPLOADED, "file-1", None)
    assert sent.resolved().state is IntentState.RESOLVED
    assert {i.attempt for i in (uploaded, sent, refused)} == {"a1"}  # one attempt id all along


@pytest.mark.parametrize("step", sorted(TRANSITIONS))
@pytest.mark.parametrize("state", [s for s in IntentState if s is not IntentState.RESOLVED])
def test_each_step_moves_an_intent_only_from_the_states_the_protocol_allows(
    state: IntentState, step: str
) -> None:
    origins, target = TRANSITIONS[step]
    intent = intent_in(state)
    if state in origins:
        assert move(intent, step).state is target
    else:
        with pytest.raises(ValueError, match=f"is {state}: it cannot be {step}"):
            move(intent, step)


def test_the_protocol_never_uploads_twice_nor_sends_what_has_no_upload() -> None:
    """The moves that would double an effect are the ones missing from the table."""
    assert TRANSITIONS["uploaded"][0] == {IntentState.PLANNED}
    assert IntentState.PLANNED not in TRANSITIONS["sent"][0]
    assert TRANSITIONS["quarantined"][0] == TRANSITIONS["refused"][0] == {IntentState.SENT}


@pytest.mark.parametrize(
    ("state", "fields"),
    [
        ("planned", {"input_file_id": "file-1"}),
        ("uploaded", {}),
        ("sent", {"input_file_id": "file-1"}),
        ("quarantined", {"sent_at": SENT_AT}),
        ("uploaded", {"input_file_id": "file-1", "sent_at": SENT_AT}),
        ("resolved", {"input_file_id": "file-1", "sent_at": SENT_AT}),
    ],
)
def test_an_intent_whose_fields_contradict_its_state_is_refused(state: str, fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PendingCreate(attempt="a1", generation="g", state=IntentState(state), **fields)


def document(*pending: dict[str, Any]) -> dict[str, Any]:
    job = {"generation": "g", "provider": "sandbox", "status": "pending", "pending": list(pending)}
    return {"format_version": 3, "serial": 2, "lineage": "l", "jobs": {"eval": job}}


def test_an_intent_written_before_intents_had_a_state_gets_the_state_its_fields_imply() -> None:
    state = parse_state(
        document(
            {"attempt": "p", "generation": "g"},
            {"attempt": "u", "generation": "g", "input_file_id": "file-1"},
            {"attempt": "s", "generation": "g", "input_file_id": "file-2", "sent_at": SENT_AT},
        ),
        "state.json",
        "state file",
    )
    states = {i.attempt: i.state for i in state.jobs["eval"].pending}
    assert states == {"p": IntentState.PLANNED, "u": IntentState.UPLOADED, "s": IntentState.SENT}


def test_a_stored_state_is_read_as_written_and_one_that_contradicts_its_fields_is_damage() -> None:
    quarantined = {
        "attempt": "q",
        "generation": "g",
        "input_file_id": "f",
        "sent_at": 1,
        "state": "quarantined",
    }
    state = parse_state(document(quarantined), "state.json", "state file")
    assert state.jobs["eval"].pending[0].state is IntentState.QUARANTINED
    written = json.loads(state.model_dump_json())
    assert written["jobs"]["eval"]["pending"][0]["state"] == "quarantined"
    with pytest.raises(StateError, match="state file is damaged"):
        parse_state(
            document({"attempt": "x", "generation": "g", "state": "sent"}), "state.json", "state file"
        )


def test_an_intent_its_batch_and_the_plans_unit_have_one_key() -> None:
    intent = PendingCreate.planned("a1", KEY, requests=3)
    assert IntentKey.of_intent(JOB.name, intent) == KEY == live("a1").unit
    # A run nobody named is the default run, wherever the key is made from.
    default = PendingCreate.planned("a2", IntentKey.of("eval", "g", None, 0, 1), requests=1)
    bare = Batch(
        id="b", status="validating", metadata={"reconciler_job": "eval", "reconciler_generation": "g"}
    )
    assert (
        IntentKey.of_intent("eval", default)
        == IntentKey.of_batch(bare)
        == IntentKey.of("eval", "g", "default", 0, 1)
    )


def test_an_intent_whose_batch_is_live_or_that_resolved_leaves_pending() -> None:
    waiting, seen, done = (
        intent_in(IntentState.SENT, "w"),
        intent_in(IntentState.SENT, "s"),
        intent_in(IntentState.SENT, "d"),
    )
    assert unresolved([waiting, seen, done.resolved()], {"s"}) == (waiting,)
    recorded = State(
        lineage="l", jobs={"eval": JobState(generation=JOB.generation, provider="sandbox", status="none")}
    )
    after = with_intents(recorded, {"eval": JOB}, {"eval": (waiting, done.resolved())}, "now")
    assert [i.attempt for i in after.jobs["eval"].pending] == ["w"]


def state_with(*intents: PendingCreate) -> State:
    job = JobState(generation=JOB.generation, provider="sandbox", status="pending", pending=intents)
    return State(lineage="l", jobs={"eval": job})


def test_only_a_sent_or_quarantined_intent_with_no_batch_is_held_back_and_only_within_its_quarantine() -> (
    None
):
    intents = [intent_in(state, state.value) for state in IntentState if state is not IntentState.RESOLVED]
    intents = [i.model_copy(update={"part": n}) for n, i in enumerate(intents)]
    state = state_with(*intents)
    waiting = in_flight(state, [], now=SENT_AT + 10, quarantine=60)
    assert {key.part: left for key, left in waiting.items()} == {2: 50, 3: 50}  # sent, quarantined
    assert in_flight(state, [live("sent")], now=SENT_AT + 10, quarantine=60).keys() == {
        IntentKey.of("eval", JOB.generation, "nightly", 3, 1)
    }
    assert in_flight(state, [], now=SENT_AT + 60, quarantine=60) == {}


def test_a_unit_held_back_in_quarantine_is_not_created_again() -> None:
    desired = {"eval": JOB}
    held = {IntentKey.of("eval", JOB.generation, "default", 0, 1): 30.0}
    plan = make_plan(desired, state_with(), [], in_flight=held, runs={"eval": RunChoice("default")})
    (change,) = plan.changes
    assert change.action is Action.NOOP and change.creates == ()
    (free,) = make_plan(desired, state_with(), [], runs={"eval": RunChoice("default")}).changes
    assert free.action is Action.CREATE and [u.part for u in free.creates] == [0]


def test_the_plan_converges_the_run_it_is_handed_and_does_not_choose_it_again() -> None:
    desired = {"eval": JOB}
    chosen = choose_runs(desired, {}, state_with(), PlanContext())
    assert chosen == {"eval": choose_run(JOB, [], (), PlanContext())} and chosen["eval"].run == "default"
    (change,) = make_plan(desired, state_with(), [], runs={"eval": RunChoice("handed")}).changes
    assert change.run == "handed" and change.action is Action.CREATE
    (later,) = make_plan(desired, state_with(), [], runs={"eval": RunChoice("handed", fresh=False)}).changes
    assert later.creates == ()  # a run left behind: no first attempts, as the choice says
