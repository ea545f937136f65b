"""Re-running a recorded training run: its code from git, its config, its data, in an isolated folder.

The code is the recorded commit checked out into a temporary git worktree (never the user's working
tree); the pipeline runs there in a fresh Python process that imports that commit's `tlops`, with
`run_core` (no orchestration, no tracking: nothing is registered, no alias moves).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from tlops.errors import TlopsError

# Runs inside the checked-out commit. Tolerant of the two shapes `run_core` has returned (a dict before the
# typed records, a CoreResult since), so older commits reproduce too.
DRIVER = """
import json, sys
from pathlib import Path
from tlops.config import config_from_dict
from tlops.pipeline import run_core
cfg = config_from_dict(json.loads(Path(sys.argv[1]).read_text()))
out = run_core(cfg, Path(sys.argv[2]))
if isinstance(out, dict):
    result = {"package": str(out["package"]), "metrics": out["evaluate"]["metrics"]}
else:
    result = {"package": str(out.package), "metrics": dict(out.evaluation.metrics)}
print("TLOPS_RERUN " + json.dumps(result))
"""


class NotReproducible(TlopsError):
    """The recorded run cannot be re-run faithfully (dirty tree, unknown commit, data version gone, ...)."""


def git(repo: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def checkout(repo: Path, commit: str) -> Iterator[Path]:
    """`commit` of `repo` in a temporary worktree, removed afterwards."""
    if git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise NotReproducible(f"commit {commit} is not in the repository {repo}; `git fetch` it, then audit again")
    with tempfile.TemporaryDirectory(prefix="tlops-audit-code-") as tmp:
        path = Path(tmp) / "code"
        added = git(repo, "worktree", "add", "--detach", str(path), commit)
        if added.returncode != 0:
            raise NotReproducible(f"could not check out {commit}: {added.stderr.strip()[:300]}")
        try:
            yield path
        finally:
            git(repo, "worktree", "remove", "--force", str(path))
            git(repo, "worktree", "prune")


def rerun(code: Path, config: dict, work_dir: Path, timeout_s: float = 7200) -> dict:
    """Run the pipeline of the code at `code` on `config` in `work_dir`; {"package": path, "metrics": {...}}."""
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg_file = work_dir / "config.json"
    cfg_file.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(code)}  # that commit's tlops, not the installed one
    out = subprocess.run([sys.executable, "-c", DRIVER, str(cfg_file), str(work_dir / "run")], capture_output=True, text=True,
                         cwd=code, env=env, timeout=timeout_s)
    line = next((ln for ln in reversed(out.stdout.splitlines()) if ln.startswith("TLOPS_RERUN ")), None)
    if out.returncode != 0 or line is None:
        raise NotReproducible(f"the re-run at {code.name} failed (exit {out.returncode}): {out.stderr.strip()[-1500:]}")
    return json.loads(line.removeprefix("TLOPS_RERUN "))
