"""Run every benchmark in one process tree, one after another (never in parallel: they time things)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for name in ("feature_throughput", "cache_warm", "quality", "image", "audio", "overhead", "finetune_throughput", "finetune_quality",
             "regression", "fewshot_regression"):
    print(f"== bench/{name}.py", flush=True)
    subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=REPO, check=True)
