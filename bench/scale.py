"""Memory and time vs dataset size (issue 14, "memory and time grow linearly"): `tlops run` on text datasets of
3k, 20k and 100k rows, through the linear probe (features + probe) and through one fine-tune epoch, each a fresh
process with a cold feature cache; wall seconds, seconds per 1k rows and peak RSS (the run's process and the
children it waited for, the temporary Prefect server included: `wait4`'s maxrss).

Data: every distinct WordNet 3.0 definition (Debian `wordnet-base`, as the demo builder reads it) of the 27
supersenses with >= 1,000 of them (108,000 rows), ranked by the demo's sha256 order; a size takes the first N,
split 80/10/10 in rank order. MiniLM (`configs/text_linear_probe.yaml`, `configs/text_finetune.yaml` with
`strategy.epochs=1`), the config's batch sizes, `validation.min_per_class=1` (small supersenses at 3k rows).

Run: `python -m bench.scale [--sizes 3000 20000 100000] [--strategies probe finetune]` (bench/out/scale.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import REPO, save
from tlops.data.build_wordnet import _rank, read_glosses
from tlops.data.dataset import write_split_csv

CONFIGS = {"probe": ("configs/text_linear_probe.yaml", []), "finetune": ("configs/text_finetune.yaml", ["strategy.epochs=1"])}
MIN_CLASS_ROWS = 1000


def corpus() -> list[tuple[str, str]]:
    """(definition, supersense) rows: distinct definitions of the large supersenses, in rank order."""
    seen: set[str] = set()
    rows = []
    for sid, lex, text in sorted(read_glosses(), key=lambda r: _rank(r[0])):
        if len(text) >= 8 and text.lower() not in seen:
            seen.add(text.lower())
            rows.append((text, lex))
    sizes = Counter(lex for _, lex in rows)
    return [r for r in rows if sizes[r[1]] >= MIN_CLASS_ROWS]


def write_dataset(rows: list[tuple[str, str]], root: Path) -> dict[str, int]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.yaml").write_text("modality: text\nname: wordnet-scale\n")
    a, b = int(0.8 * len(rows)), int(0.9 * len(rows))
    counts = {}
    for split, part in (("train", rows[:a]), ("val", rows[a:b]), ("test", rows[b:])):
        write_split_csv(root / f"{split}.csv", ["text", "label"], part)
        counts[split] = len(part)
    return counts


def run_one(strategy: str, data: Path, work: Path) -> dict:
    """`tlops run --json` in a fresh process; wall and CPU seconds and peak RSS from `wait4` (the process and the
    children it waited for: the temporary Prefect server it stops at the end included)."""
    config, sets = CONFIGS[strategy]
    over = [f"data.path={data}", f"features.cache_dir={work / 'cache'}", f"execution.work_dir={work / 'runs'}",
            f"tracking.uri=sqlite:///{work / 'mlruns.db'}", "tracking.experiment=bench-scale", "validation.min_per_class=1",
            f"registry.model_name=scale-{strategy}", *sets]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(work / "prefect-home")}
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(REPO / config), "--json", *[a for s in over for a in ("--set", s)]],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise RuntimeError(f"tlops run ({strategy}, {data}) exited with status {status}")
    r = json.loads(out)
    return {"run_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "test_metrics": r.get("test_metrics"), "cache": r.get("cache")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[3000, 20000, 100000])
    ap.add_argument("--strategies", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args()
    rows = corpus()
    results = []
    with tempfile.TemporaryDirectory(prefix="tlops-bench-scale-") as tmp:
        if max(args.sizes) > len(rows):
            raise SystemExit(f"{max(args.sizes)} rows asked; the corpus has {len(rows)}")
        for strategy in args.strategies:  # every size of the probe first: the 100k fine-tune epoch is the longest run
            for n in args.sizes:
                data = Path(tmp) / f"data-{n}"
                counts = write_dataset(rows[:n], data)
                r = run_one(strategy, data, Path(tmp) / f"work-{n}-{strategy}")
                r |= {"rows": n, "splits": counts, "strategy": strategy, "s_per_1k_rows": r["run_s"] / (n / 1000)}
                results.append(r)
                print(f"{n} rows {strategy}: {r['run_s']:.1f} s ({r['s_per_1k_rows']:.2f} s/1k rows), "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB, test {r['test_metrics']}", flush=True)
                save("scale.partial", {"results": results})
    save("scale", {"corpus_rows": len(rows), "classes": len({lex for _, lex in rows}), "results": results})


if __name__ == "__main__":
    main()
