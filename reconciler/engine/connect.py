"""Opens one API per provider in use (a reader and a writer over one transport), and the
embedded sandbox when a job needs it.

Header `${VAR}`s are expanded here, at the last moment, and the values handed to the
client only so it can scrub them from any message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping

import httpx

from reconciler.api.client import ProviderApi
from reconciler.api.transport import DEFAULT_BACKOFF, Backoff, Transport
from reconciler.common.errors import UserError
from reconciler.common.limits import SANDBOX, parse_seconds
from reconciler.specs.fields import close_match
from reconciler.specs.loader import LoadedRepo
from reconciler.specs.repo import RepoPaths
from reconciler.specs.secrets import expand_headers, variables_in

SANDBOX_URL_ENV = "RECONCILER_SANDBOX_URL"
TIMEOUT_ENV = "RECONCILER_HTTP_TIMEOUT"
READ_TIMEOUT_SECONDS = 30.0
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32)


def resolve_provider_headers(
    repo: LoadedRepo, providers: Iterable[str], env: Mapping[str, str]
) -> dict[str, tuple[str, dict[str, str]]]:
    """base URL and expanded headers per provider; a missing variable fails before any request."""
    resolved: dict[str, tuple[str, dict[str, str]]] = {}
    for name in sorted(providers):
        if name == SANDBOX:
            continue
        if name not in repo.providers:
            renamed = close_match(name, repo.providers)
            hint = f" (was it renamed {renamed!r}?)" if renamed else ""
            raise UserError(
                f"the state records jobs on provider {name!r}, but no Provider document has that "
                f"name{hint}; restore it so those batches can be cancelled or forgotten"
            )
        spec = repo.providers[name].provider.spec
        resolved[name] = (spec.base_url, expand_headers(name, spec.headers, env))
    return resolved


@contextlib.contextmanager
def open_clients(
    repo: LoadedRepo,
    providers: Iterable[str],
    paths: RepoPaths,
    env: Mapping[str, str] | None = None,
    *,
    ends_at: float | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> Iterator[dict[str, ProviderApi]]:
    """`ends_at` (monotonic) bounds every request of the command, e.g. `reconcile --timeout`;
    `backoff` says how a request retries (the daemon's waits out less in a request)."""
    env = os.environ if env is None else env
    wanted = set(providers)
    resolved = resolve_provider_headers(repo, wanted, env)
    with contextlib.ExitStack() as stack:
        clients: dict[str, ProviderApi] = {}
        for name, (base_url, headers) in resolved.items():
            # Only what came from ${VAR}s is secret; `openai` or a host name scrubbed from
            # every message would make errors unreadable.
            secrets = _secret_values(repo, name, env)
            clients[name] = _client(stack, name, base_url, headers, secrets, backoff)
        if SANDBOX in wanted:
            clients[SANDBOX] = _client(stack, SANDBOX, _sandbox_url(stack, paths, env), {}, [], backoff)
        for api in clients.values():
            api.reader.transport.command_ends_at = ends_at
        yield clients


def _client(
    stack: contextlib.ExitStack,
    name: str,
    base_url: str,
    headers: Mapping[str, str],
    secrets: list[str],
    backoff: Backoff,
) -> ProviderApi:
    # Plain http never uses TLS: skip loading the CA bundle, ~60 ms of every command's start.
    verify = not base_url.lower().startswith("http://")
    http = stack.enter_context(
        httpx.Client(
            base_url=base_url, headers=dict(headers), timeout=_timeout(), limits=LIMITS, verify=verify
        )
    )
    return ProviderApi.over(Transport(http, secrets=secrets, provider=name, backoff=backoff))


def _timeout() -> httpx.Timeout:
    """30 s to wait for an answer, or $RECONCILER_HTTP_TIMEOUT; 10 s to connect."""
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        seconds = parse_seconds(raw, above=True) if raw else READ_TIMEOUT_SECONDS
    except ValueError as error:
        raise UserError(f"${TIMEOUT_ENV}={raw!r} {error}") from None
    return httpx.Timeout(seconds, connect=min(10.0, seconds))


def _sandbox_url(stack: contextlib.ExitStack, paths: RepoPaths, env: Mapping[str, str]) -> str:
    """An external sandbox when $RECONCILER_SANDBOX_URL says so, else one in this process."""
    external = env.get(SANDBOX_URL_ENV)
    if external:
        return external
    from reconciler.engine.embedded_sandbox import embedded_sandbox  # only sandbox jobs pay for its import

    return stack.enter_context(embedded_sandbox(paths.sandbox_data, env)).base_url


def _secret_values(repo: LoadedRepo, provider: str, env: Mapping[str, str]) -> list[str]:
    headers = repo.providers[provider].provider.spec.headers
    return [env[v] for value in headers.values() for v in variables_in(value) if env.get(v)]
