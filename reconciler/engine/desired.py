"""A loaded spec and its input's digest → the DesiredJob the planner reads, with which of its
requests changed since the state's record.

The generation is a hash of the fields that decide what a batch's requests come back with,
plus the input's sha256: any change to them means new batches.  Labels, the batch metadata,
retry, results, cleanup, the files' expiry, the schedule, reuse and the deletion policy shape how a
job is run and kept, not what its requests answer, so they change no generation.

The requests changed are compared through the request indexes kept where inputs are read
(specs/inputs/cache.py): the old input is usually gone from the checkout, its index is not.
Without both indexes (a fresh CI runner, an input last read before indexes existed) the plan
shows only counts and digests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.common.limits import MAX_INPUT_BYTES, MAX_INPUT_REQUESTS, SANDBOX, InputLimits
from reconciler.common.ownership import generation
from reconciler.plans.changes import DesiredJob, QueueLimit, Slot
from reconciler.plans.runs import label_run
from reconciler.specs.fields import DEFAULT_RETRY_ON
from reconciler.specs.inputs.cache import compare, read_index
from reconciler.specs.inputs.digest import InputDigest
from reconciler.specs.loader import LoadedJob
from reconciler.specs.models import BatchJobSpec, Provider
from reconciler.specs.parts import split_input
from reconciler.specs.prices import find_price
from reconciler.state.model import State

_DEFAULT_RETRY_ON = tuple(DEFAULT_RETRY_ON)


def desired_job(
    loaded: LoadedJob, digest: InputDigest, cache_dir: Path | None = None, document: Provider | None = None
) -> DesiredJob:
    """`document`: the job's Provider, whose pricing wins over the shipped table."""
    spec = loaded.job.spec
    provider = spec.provider or SANDBOX
    # The embedding inputs limit cuts parts too, but is not hashed: it changes no partition
    # the API would have accepted (a part over 50,000 inputs failed there).
    split = InputLimits(spec.split.max_requests, spec.split.max_bytes) if spec.split else None
    limit = queue_limit(document, digest.model)
    fit = _fit(limit, digest)
    if fit is not None:  # larger than its queue: cut to fit, on top of `split:`
        split = _fitted(split, fit)
    parts = (
        split_input(
            loaded.input_path,
            split,
            display=str(loaded.input_path),
            cache_dir=cache_dir,
            endpoint=spec.endpoint,
        )
        if split
        else ()
    )
    price = find_price(digest.model, document)
    outcome: dict[str, Any] = {
        "endpoint": spec.endpoint,
        "completion_window": spec.completion_window,
        "provider": provider,
        "split": [split.max_requests, split.max_bytes] if split else None,
    }
    if fit is not None:  # hashed only when it cuts: a limit a job fits in changes none of its batches
        outcome["fit"] = [fit.tokens, fit.requests]
    return DesiredJob(
        name=loaded.name,
        generation=generation(outcome, digest.sha256),
        provider=provider,
        suspend=spec.suspend,
        deletion_policy=spec.deletion_policy,
        requests=digest.requests,
        model=digest.model,
        input_bytes=digest.size,
        parts=parts,
        split=split,
        max_attempts=spec.retry.max_attempts if spec.retry else 1,
        retry_on=tuple(spec.retry.on) if spec.retry else _DEFAULT_RETRY_ON,
        endpoint=spec.endpoint,
        completion_window=spec.completion_window,
        # The spec's own metadata, not a copy (two copies a job were a tenth of a desired job's
        # memory): a frozen document's, which nothing changes in place.
        metadata=spec.metadata,
        input_path=str(loaded.input_path),
        results_path=str(loaded.results_path) if loaded.results_path else None,
        cleanup_inputs=bool(spec.cleanup and spec.cleanup.input_files),
        cleanup_outputs=bool(spec.cleanup and spec.cleanup.output_files),
        input_expires_after=spec.input_expires_after,
        output_expires_after=spec.output_expires_after,
        input_tokens=digest.input_tokens,
        output_tokens=digest.output_tokens,
        unbounded=digest.unbounded,
        prices=price.prices if price else None,
        price_taken=price.taken if price else None,
        budget_usd=spec.budget.max_usd if spec.budget else None,
        budget_cancels=bool(spec.budget and spec.budget.on_exceed == "cancel"),
        run_label=label_run(spec.run),
        schedule=_schedule(spec),
        history_limit=spec.history_limit,
        definition=_definition(spec, outcome, digest),
        priority=spec.priority,
        queue_limit=limit,
        reuse_max_age=spec.reuse.max_age if spec.reuse else None,
        reuse_scope=spec.reuse.scope if spec.reuse else "job",
        input_sha256=digest.sha256,
    )


def queue_limit(document: Provider | None, model: str) -> QueueLimit | None:
    """The queue limit a job's Provider declares for its model (or for "*")."""
    declared = document.spec.limit_for(model) if document else None
    return QueueLimit(declared.enqueued_tokens, declared.enqueued_requests) if declared else None


def _fit(limit: QueueLimit | None, digest: InputDigest) -> QueueLimit | None:
    """The limit a job must be cut to fit, when its whole input is more than its queue holds."""
    if limit is None:
        return None
    tokens = limit.tokens is not None and digest.input_tokens > limit.tokens
    requests = limit.requests is not None and digest.requests > limit.requests
    return limit if tokens or requests else None


def _fitted(split: InputLimits | None, fit: QueueLimit) -> InputLimits:
    given = split or InputLimits(MAX_INPUT_REQUESTS, MAX_INPUT_BYTES)
    requests = min(given.max_requests, fit.requests or MAX_INPUT_REQUESTS)
    return InputLimits(requests, given.max_bytes, max_tokens=fit.tokens)


def _schedule(spec: BatchJobSpec) -> Slot | None:
    if spec.schedule is None:
        return None
    return Slot(spec.schedule, spec.timezone, spec.concurrency_policy, spec.starting_deadline)


def _definition(spec: BatchJobSpec, outcome: dict[str, Any], digest: InputDigest) -> dict[str, Any]:
    """What a plan's diff shows: the generation's fields, the metadata, `run` and the input.
    All but `run` and `input` are what the generation hashed before runs existed
    (DesiredJob.legacy_generation)."""
    return {
        **outcome,
        "metadata": spec.metadata,
        "run": spec.run,
        "input": {"sha256": digest.sha256, "requests": digest.requests, "model": digest.model},
    }


def with_input_changes(
    desired: Mapping[str, DesiredJob], state: State, indexes: Path
) -> dict[str, DesiredJob]:
    found = dict(desired)
    for name, job in desired.items():
        recorded = state.jobs.get(name)
        if recorded is None or recorded.generation == job.generation:  # the same input (it is hashed)
            continue
        old, new = _sha(recorded.definition), _sha(job.definition)
        if old is None or new is None or old == new:
            continue
        before, after = read_index(indexes, old), read_index(indexes, new)
        if before is not None and after is not None:
            found[name] = dataclasses.replace(job, input_changes=compare(before, after))
    return found


def _sha(definition: Mapping[str, object] | None) -> str | None:
    given = (definition or {}).get("input")
    sha = given.get("sha256") if isinstance(given, Mapping) else None
    return sha if isinstance(sha, str) else None
