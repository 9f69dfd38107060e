"""Where the state lives: the local file (the default) or a PostgreSQL database.

In order: `--state-url`, `--state FILE`, `$RECONCILER_STATE_URL`, `state:` in reconciler.yaml,
else `<repo>/.reconciler/state.json`.  A password may come only through the environment
(`$RECONCILER_STATE_URL`, or libpq's own `$PGPASSWORD` / `~/.pgpass`): a flag shows in `ps`
and reconciler.yaml is committed, so a password in either is refused before anything runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from reconciler.common.errors import UserError
from reconciler.specs.settings import SETTINGS_FILE, RepoSettings, read_settings

STATE_URL_ENV = "RECONCILER_STATE_URL"
SCHEMES = ("postgresql", "postgres")


def resolve_state_url(
    repo: Path, flag: str | None, state_flag: str | None, settings: RepoSettings | None = None
) -> str | None:
    """The state URL to use, or None for the state file.  `settings`: reconciler.yaml as the
    command already read it (read here when not given)."""
    if flag:
        return checked_url(flag, "--state-url", password_allowed=False)
    if state_flag:
        return None
    from_env = os.environ.get(STATE_URL_ENV)
    if from_env:
        return checked_url(from_env, f"${STATE_URL_ENV}", password_allowed=True)
    from_settings = (settings if settings is not None else read_settings(repo)).state
    if from_settings:
        where = f"{repo / SETTINGS_FILE}: state"
        return checked_url(from_settings, where, password_allowed=False)
    return None


def checked_url(url: str, source: str, *, password_allowed: bool) -> str:
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None or "password" in dict(parse_qsl(parts.query))
    except ValueError:
        raise UserError(f"{source}: not a URL; use postgresql://USER@HOST[:PORT]/DATABASE") from None
    if parts.scheme not in SCHEMES:
        shown = parts.scheme or "no scheme"
        raise UserError(
            f"{source}: {shown} is not a state backend; use postgresql://USER@HOST[:PORT]/DATABASE"
        )
    if has_password and not password_allowed:
        raise UserError(
            f"{source}: holds a password, which would be written down (shell history, ps, git); "
            f"drop it and give it in $PGPASSWORD, ~/.pgpass or ${STATE_URL_ENV} instead"
        )
    return url
