"""The documents a user writes, `BatchJob`, `Provider` and `Notification` (apiVersion reconciler/v1).

Every check that needs only the document itself is a field validator (fields.py); checks
that need the file system or other documents live in loader.py. Models are strict: YAML's
`yes` is not a string and `"true"` is not a boolean.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from reconciler.common import limits
from reconciler.specs.fields import (
    DEFAULT_RETRY_ON,
    EVENT_NAMES,
    BaseUrl,
    ByteSize,
    CompletionWindow,
    Cron,
    Duration,
    Endpoint,
    EventName,
    FileExpiry,
    Headers,
    JobGlob,
    Metadata,
    ModelName,
    Name,
    NotifyUrl,
    RepoFile,
    ResultsFile,
    RetryReason,
    RunLabel,
    TimeZone,
    WebhookSecret,
)

API_VERSION = "reconciler/v1"


class _Document(BaseModel):
    # attribute docstrings become JSON Schema descriptions: editors show them on hover; `.inf` and
    # `.nan` are YAML floats, and no number of a spec may be either (a nan passes every bound)
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        populate_by_name=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
    )

    def model_post_init(self, context: Any, /) -> None:
        # Pydantic gives each document its own set of the fields it was given; ten thousand
        # specs give the same few sets over and over (a sixth of a loaded spec's memory). Equal
        # sets are shared instead: the same fields, so `model_fields_set` reads as before, and
        # never changed in place (a frozen model refuses assignment; `model_copy` copies first).
        given = self.__pydantic_fields_set__
        object.__setattr__(self, "__pydantic_fields_set__", _FIELDS_GIVEN.setdefault(frozenset(given), given))


_FIELDS_GIVEN: dict[frozenset[str], set[str]] = {}  # each set of given fields seen, by its contents


class ObjectMeta(_Document):
    name: Name
    """Unique per kind in the repo: lowercase letters, digits and '-', at most 63 characters."""
    labels: dict[str, str] = {}
    """Free-form key: value pairs for selection and display."""


class SplitSpec(_Document):
    max_requests: Annotated[int, Field(ge=1, le=limits.MAX_INPUT_REQUESTS)] = limits.MAX_INPUT_REQUESTS
    """Requests per part at most; the API allows 50,000."""
    max_bytes: ByteSize = limits.MAX_INPUT_BYTES
    """Bytes per part at most, e.g. 200MB (the API's limit) or 50MiB."""


class RetrySpec(_Document):
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 1
    """Batches per request at most, the first included; 1 means no retry."""
    on: list[RetryReason] = DEFAULT_RETRY_ON
    """Which request outcomes are sent again."""


class CleanupSpec(_Document):
    input_files: bool = False
    """Delete uploaded inputs once their batch has finished."""
    output_files: bool = False
    """Delete output and error files once the merged results are written (needs results)."""


class BudgetSpec(_Document):
    max_usd: Annotated[float, Field(gt=0)]
    """A run's cost at most, in USD: when its estimate is more, this job's change alone is refused
    (the other jobs' go ahead) unless --allow-over-budget."""
    on_exceed: Literal["report", "cancel"] = "report"
    """When a running run's actual cost passes max_usd: report it, or also cancel what still runs."""


class ReuseSpec(_Document):
    max_age: Duration = 30 * 86400
    """An earlier answer is reused while it is at most this old (e.g. 30d), from when it was answered."""
    scope: Literal["job", "owner"] = "job"
    """job: answers of this job's earlier runs; owner: also those of the owner's other jobs."""


class BatchJobSpec(_Document):
    provider: Name | None = None
    """A Provider document's name; omitted: the built-in sandbox."""
    endpoint: Endpoint
    """The Batch API endpoint every request line targets (each line's url must equal it)."""
    completion_window: CompletionWindow = "24h"
    """How long the provider may take; the Batch API only accepts 24h."""
    input: RepoFile
    """The JSONL input, relative to this spec file; it must stay inside the repo."""
    metadata: Metadata = {}
    """Passed to the batch after the reconciler's own keys; keys may not start with reconciler_."""
    suspend: bool = False
    """true: create nothing, and cancel what runs."""
    deletion_policy: Literal["cancel", "orphan"] = "cancel"
    """What happens to a running batch when this spec goes away."""
    split: SplitSpec | None = None
    """Split an input over the API's limits into several batches (parts)."""
    retry: RetrySpec | None = None
    """Send again only the requests that did not succeed, up to max_attempts batches each."""
    results: ResultsFile | None = None
    """Where to write the merged results (JSONL), relative to this spec file, inside the repo;
    {job} and {run} are filled in, so runs need not overwrite each other."""
    cleanup: CleanupSpec | None = None
    """Delete files the reconciler uploaded or whose contents it has merged."""
    input_expires_after: FileExpiry | None = None
    """How long the provider keeps each input this job uploads, from 1h to 30d (e.g. 7d);
    omitted: the provider's default (30 days for batch inputs at OpenAI)."""
    output_expires_after: FileExpiry | None = None
    """How long the provider keeps each batch's output and error files, from their creation,
    from 1h to 30d (e.g. 7d); omitted: the provider's default (30 days at OpenAI)."""
    budget: BudgetSpec | None = None
    """The most one run of this job may cost; checked against the plan's estimate."""
    schedule: Cron | None = None
    """Five-field cron expression, or a macro as Kubernetes CronJob takes (@yearly, @annually,
    @monthly, @weekly, @daily, @midnight, @hourly): each slot starts one run, e.g. "0 2 * * *"
    (02:00 daily)."""
    timezone: TimeZone = "UTC"
    """The IANA time zone the schedule is read in, e.g. Europe/Berlin."""
    concurrency_policy: Literal["forbid", "replace", "allow"] = "forbid"
    """When a slot comes while the previous run still runs: forbid (wait for it), replace
    (cancel it) or allow (run both)."""
    starting_deadline: Duration | None = None
    """A slot missed by more than this (e.g. 2h) is skipped; omitted: never skipped."""
    run: RunLabel | None = None
    """Any string; changing it starts a new run of an otherwise unchanged spec."""
    history_limit: Annotated[int, Field(ge=1, le=100)] = 10
    """How many runs the state keeps per job."""
    reuse: ReuseSpec | None = None
    """Send only requests without a recent answer: a request (its endpoint and body, not its
    custom_id) answered with status 200 by an earlier run is not sent again; its answer is reused."""
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    """Where the job's parts stand in its model's queue: higher first; equal priorities take
    turns part by part, in the order of their schedule slots or of the specs' first appearance."""

    @model_validator(mode="after")
    def _schedule_fields_need_a_schedule(self) -> BatchJobSpec:
        given = {"timezone", "concurrency_policy", "starting_deadline"} & self.model_fields_set
        if self.schedule is None and given:
            raise PydanticCustomError(
                "reconciler", f"{', '.join(sorted(given))} only apply with a schedule; add one or remove them"
            )
        return self


class BatchJob(_Document):
    """An LLM batch job: one JSONL input sent to the Batch API, kept in sync with git."""

    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["BatchJob"]
    metadata: ObjectMeta
    spec: BatchJobSpec

    @property
    def name(self) -> str:
        return self.metadata.name


# Far above any model's, and low enough that no estimate of up to 50,000 requests overflows.
MAX_USD_PER_MILLION = 1_000_000
MAX_OUTPUT_TOKENS = 10_000_000
Price = Annotated[float, Field(ge=0, le=MAX_USD_PER_MILLION)]


class ModelPrice(_Document):
    input: Price
    """USD per million input tokens, at batch prices."""
    output: Price
    """USD per million output tokens (reasoning included), at batch prices."""
    cached_input: Price | None = None
    """USD per million cached input tokens; omitted: charged as input."""
    max_output_tokens: Annotated[int, Field(ge=1, le=MAX_OUTPUT_TOKENS)] | None = None
    """The model's own output cap: the bound of a request that sets no max_tokens."""


# The largest queue a provider publishes is in the billions of tokens (OpenAI tier 5: 15e9).
MAX_QUEUE = 10**15
QueueSize = Annotated[int, Field(ge=1, le=MAX_QUEUE)]
ANY_MODEL = "*"


class QueueLimitSpec(_Document):
    enqueued_tokens: QueueSize | None = None
    """Prompt tokens the model's unfinished batches may hold at once (OpenAI's batch queue limit)."""
    enqueued_requests: QueueSize | None = None
    """Requests the model's unfinished batches may hold at once, where the provider caps them."""

    @model_validator(mode="after")
    def _one_at_least(self) -> QueueLimitSpec:
        if self.enqueued_tokens is None and self.enqueued_requests is None:
            raise PydanticCustomError("reconciler", "give enqueued_tokens, enqueued_requests or both")
        return self


class ProviderSpec(_Document):
    base_url: BaseUrl
    """The OpenAI-compatible API's base URL, e.g. https://api.openai.com/v1; no credentials in it."""
    headers: Headers = {}
    """Sent with every request; write secrets as ${VAR}, read from the environment at run time."""
    pricing: dict[ModelName, ModelPrice] = {}
    """Per model: batch prices in USD per million tokens, over the shipped default table."""
    webhook_secret: WebhookSecret | None = None
    """The whsec_ secret webhooks from this provider are signed with, as ${VAR} only."""
    limits: dict[ModelName, QueueLimitSpec] = {}
    """Per model ("*": every other model): the batch queue limits of your organisation, e.g.
    gpt-4o-mini: {enqueued_tokens: 2000000}; jobs wait for room instead of failing against them."""

    def limit_for(self, model: str) -> QueueLimitSpec | None:
        return self.limits.get(model) or self.limits.get(ANY_MODEL)


class Provider(_Document):
    """Where batches are sent: an OpenAI-compatible Batch API, direct or through a gateway."""

    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["Provider"]
    metadata: ObjectMeta
    spec: ProviderSpec

    @property
    def name(self) -> str:
        return self.metadata.name


class NotificationSpec(_Document):
    url: NotifyUrl
    """Where each message is POSTed; usually a secret itself: write ${SLACK_WEBHOOK_URL}."""
    format: Literal["slack", "json"] = "json"
    """slack: a Slack incoming-webhook message; json: a CloudEvents 1.0 envelope."""
    events: Annotated[list[EventName], Field(min_length=1)] = list(EVENT_NAMES)
    """Which events are sent; default every one."""
    jobs: Annotated[list[JobGlob], Field(min_length=1)] = ["*"]
    """Job name patterns (globs such as nightly-*); default every job."""
    headers: Headers = {}
    """Sent with every message; write secrets as ${VAR}, like a Provider's headers."""


class Notification(_Document):
    """A channel told once about each event of the jobs it follows: failed, completed, …"""

    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["Notification"]
    metadata: ObjectMeta
    spec: NotificationSpec

    @property
    def name(self) -> str:
        return self.metadata.name


Kind = type[BatchJob] | type[Provider] | type[Notification]
KINDS: dict[str, Kind] = {"BatchJob": BatchJob, "Provider": Provider, "Notification": Notification}
