"""The alternatives of item 4: a script on the official `openai` SDK, and `batchwizard`
from PyPI installed into a throwaway venv (it is no dependency of the project)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

# Outside the tree, kept between runs: batchwizard is no dependency of the project.
BATCHWIZARD_VENV = Path(tempfile.gettempdir()) / "reconciler-bench-venvs" / "batchwizard"
BATCHWIZARD = "batchwizard==0.5.0"

SDK_SCRIPT = """
import pathlib, sys, openai
mode, folder, ids = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
client = openai.OpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment
if mode == "submit":
    created = []
    for path in sorted(folder.glob("*.jsonl")):
        with path.open("rb") as stream:
            uploaded = client.files.create(file=stream, purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        created.append(batch.id)
    ids.write_text("\\n".join(created))
else:
    for batch_id in ids.read_text().split():
        print(batch_id, client.batches.retrieve(batch_id).status)
"""

# Issue 19's yardstick for `plan`: listing every batch, nothing else.
SDK_LIST_SCRIPT = """
import openai
client = openai.OpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment
print(sum(1 for _ in client.batches.list(limit=100)))
"""

# Issue 19's yardstick for `apply`: upload + create per job, 16 at a time, on the SDK.
SDK_THREADS_SCRIPT = """
import pathlib, sys, openai
from concurrent.futures import ThreadPoolExecutor
client = openai.OpenAI(max_retries=0)
def one(path):
    with path.open("rb") as stream:
        uploaded = client.files.create(file=stream, purpose="batch")
    client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
with ThreadPoolExecutor(16) as pool:
    list(pool.map(one, sorted(pathlib.Path(sys.argv[1]).glob("*.jsonl"))))
"""


def batchwizard() -> tuple[str | None, str]:
    """The batchwizard executable in a throwaway venv (created once), or why there is none."""
    executable = BATCHWIZARD_VENV / "bin" / "batchwizard"
    if not executable.exists():
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", str(BATCHWIZARD_VENV)], check=True, capture_output=True
            )
            pip = [str(BATCHWIZARD_VENV / "bin" / "pip"), "install", "--quiet", BATCHWIZARD]
            subprocess.run(pip, check=True, capture_output=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as error:
            return None, f"could not install {BATCHWIZARD}: {error}"
    return str(executable), ""
