"""Feature step cold (empty cache) vs warm (same data again). Target: >= 20x faster, 0 backbone calls."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.common import CONFIG, save, timed
from tlops.config import load_config
from tlops.pipeline import features_step


def main() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="tlops-bench-cache-"))
    try:
        cfg = load_config(CONFIG, [f"features.cache_dir={tmp / 'cache'}", "data.path=data/text_wordnet"])
        t_cold, cold = timed(lambda: features_step(cfg, tmp / "f1"))
        t_warm, warm = timed(lambda: features_step(cfg, tmp / "f2"), repeat=3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return save("cache_warm", {
        "items": cold.cache.misses, "cold_s": t_cold, "warm_s": t_warm, "speedup": t_cold / t_warm,
        "cold_cache": cold.cache.model_dump(), "warm_cache": warm.cache.model_dump(), "target": "speedup >= 20, warm backbone_calls == 0",
    })


if __name__ == "__main__":
    main()
