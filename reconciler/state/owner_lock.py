"""The owner's lock on one machine: one writer per owner, whichever state file it writes.

The batches belong to the owner, not to a state file: two checkouts of one repo, or the
daemon with `--state` elsewhere and a manual `apply` in the checkout, must not plan at the
same time.  The lock file is keyed by the owner tag in a per-user runtime directory
($XDG_RUNTIME_DIR/reconciler, else <temp dir>/reconciler-<uid>), held with flock and naming
its holder (common/fileops.py).  Across machines, only a shared backend can do this.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from reconciler.common.errors import StateError

RUNTIME_ENV = "XDG_RUNTIME_DIR"


def owner_lock_path(owner_tag: str) -> Path:
    return runtime_dir() / "owners" / f"{owner_tag}.lock"


def runtime_dir() -> Path:
    """Ours alone: created 0700, and refused when another user owns it (it could fake a holder
    or, worse, make us wait forever)."""
    base = os.environ.get(RUNTIME_ENV)
    folder = Path(base) / "reconciler" if base else Path(tempfile.gettempdir()) / f"reconciler-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        owner = folder.stat().st_uid
    except OSError as error:
        raise StateError(f"{folder}: cannot create the lock folder ({error.strerror})") from None
    if owner != os.getuid():
        raise StateError(f"{folder}: the lock folder belongs to uid {owner}, not us; set ${RUNTIME_ENV}")
    return folder
