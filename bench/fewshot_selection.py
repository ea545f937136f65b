"""Few-shot selection on the support set (issue 30): does choosing per task by held-out support accuracy pick what
the task's own query rows (the oracle) would pick, and is the chosen candidate never worse than the frozen-feature
ProtoNet (protonet0) or the meta-trained encoder?

Per modality (configs/<modality>_fewshot.yaml, its demo data and real pretrained backbone) and seed: the config's
strategy meta-trains (its own meta_epochs unless --set), through the core API, the run registering its support choice
(selection.json); then on `--episodes` 5-way K-shot test episodes of the novel classes every candidate
(`tlops.training.meta_selection.CANDIDATES`) is scored on the episode's support rows (leave-one-shot-out, the
registration's own routine, batched over episodes) and on its query rows. Per seed: the agreement rate (the support
choice's query accuracy equals the best candidate's on that episode), the mean query accuracy of the per-task choice,
of protonet0, of the meta-learned encoder and of the per-task oracle; mean ± std over seeds.

Run: `python -m bench.fewshot_selection [--modalities text image audio] [--seeds 0 1 2] [--episodes 200] [--set K=V]`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import REPO, save
from tlops.config import load_config
from tlops.pipeline import features_step, finish, train_step, validate_step


def adapter_of(result, root: Path):
    """The run's packaged encoder + adaptation rule (`FewShotAdapter`), from the files a package would hold."""
    from tlops.fewshot_predictor import FewShotAdapter, package_files

    files, meta = package_files(result.meta_learner)
    for rel, src in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    return FewShotAdapter(root, meta)


def episode_table(adapter, x: np.ndarray, y: np.ndarray, shots: int, queries: int, episodes: int, seed: int) -> dict:
    """Per candidate and episode: held-out support accuracy and query accuracy (T,) arrays."""
    from tlops.training import meta_selection as ms
    from tlops.training.episodes import EpisodeSampler, way_targets
    from tlops.training.episodic_eval import EVAL_STREAM

    sampler = EpisodeSampler(y, 5, shots, queries, seed + EVAL_STREAM + shots)  # the run's own test episodes of this shot count
    ep = sampler.batch(0, episodes)
    xt = torch.from_numpy(x)
    sy = way_targets(5, shots).numpy()
    support = ms.support_scores(ms.CANDIDATES, adapter.encoder, adapter.learner, xt[ep.support], sy, 5)
    query = {n: ms.episode_accuracies(n, adapter.encoder, adapter.learner, x, sampler, episodes) for n in ms.CANDIDATES}
    return {"support": support, "query": query}


def summarise(table: dict) -> dict:
    from tlops.training import meta_selection as ms

    names = list(ms.CANDIDATES)
    q = np.stack([table["query"][n] for n in names], 1)  # (T, C)
    s = np.stack([table["support"][n] for n in names], 1)
    pick = np.array([names.index(ms.choose(dict(zip(names, row)))) for row in s])
    chosen = q[np.arange(len(q)), pick]
    return {"agreement": float((chosen >= q.max(1) - 1e-9).mean()), "chosen": float(chosen.mean()), "oracle": float(q.max(1).mean()),
            **{n: float(q[:, i].mean()) for i, n in enumerate(names)},
            "picked": {n: int((pick == i).sum()) for i, n in enumerate(names)}}


def run(modality: str, seeds: list[int], episodes: int, shots: int, overrides: list[str], work: Path) -> dict:
    out: dict = {"config": f"configs/{modality}_fewshot.yaml", "seeds": {}}
    feats = None
    for seed in seeds:
        cfg = load_config(REPO / "configs" / f"{modality}_fewshot.yaml",
                          [f"seed={seed}", f"strategy.eval_shots=[{shots}]", "strategy.baselines=[protonet0]", *overrides])
        cfg.features.cache_dir = str(REPO / ".tlops" / "cache")
        cfg.execution.work_dir = str(work / f"seed{seed}")
        if feats is None:
            validate_step(cfg)
            feats = features_step(cfg, work / "features")
        t = time.perf_counter()
        result = train_step(cfg, feats, work / f"seed{seed}" / "train")
        seconds = time.perf_counter() - t
        finish(result)
        from tlops.selection_record import SelectionRecord, selection_file

        record = SelectionRecord.load(selection_file(result))
        adapter = adapter_of(result, work / f"seed{seed}" / "pkg")
        xt, yt = feats.arrays("test")
        t = time.perf_counter()
        s = summarise(episode_table(adapter, xt, yt, shots, cfg.strategy.queries, episodes, seed))
        out["seeds"][seed] = {**s, "registered": record.chosen, "registered_why": record.why, "oracle_registered": record.oracle,
                              "train_seconds": seconds, "selection_seconds": time.perf_counter() - t}
        print(f"[{modality} seed {seed}] registered {record.chosen}; per task: agreement {s['agreement']:.2f}, chosen {s['chosen']:.3f}, "
              f"protonet0 {s['protonet0']:.3f}, meta_learned {s['meta_learned']:.3f}, oracle {s['oracle']:.3f}; picked {s['picked']}",
              flush=True)
    return out


def markdown(results: dict, shots: int, episodes: int) -> str:
    keys = ["agreement", "chosen", "protonet0", "meta_learned", "linear_probe", "finetune_support", "meta_probe", "oracle"]
    lines = [f"| set (5-way {shots}-shot, {episodes} test episodes per seed) | " + " | ".join(keys) + " | registered (per seed) |",
             "|---|" + "---:|" * len(keys) + "---|"]
    for modality, r in results.items():
        rows = list(r["seeds"].values())
        cells = []
        for k in keys:
            v = np.array([row[k] for row in rows])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
        lines.append(f"| {modality} | " + " | ".join(cells) + " | " + ", ".join(row["registered"] for row in rows) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modalities", nargs="+", default=["text", "image", "audio"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="tlops-bench-fewshot-selection-") as tmp:
        for modality in args.modalities:
            results[modality] = run(modality, args.seeds, args.episodes, args.shots, args.overrides, Path(tmp) / modality)
            save("fewshot_selection.partial", {"results": results})
    save("fewshot_selection", {"episodes": args.episodes, "shots": args.shots, "overrides": args.overrides, "results": results})
    print(markdown(results, args.shots, args.episodes))


if __name__ == "__main__":
    main()
