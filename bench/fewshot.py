"""Meta-transfer benchmark (issue 12): per modality (configs/<modality>_fewshot.yaml, the demo few-shot data and
the config's real pretrained backbone), 5-way 1-shot and 5-shot accuracy over >= 600 test episodes of the novel
test classes, mean and 95% CI, for the meta-learned strategies (protonet, maml, fomaml, meta_sgd, anil = maml
with `anil: true`) and the baselines on the very same episodes (linear probe fitted on the support set,
ProtoNet without meta-training, fine-tuning a new linear head on the support set); plus the meta-training
seconds of each strategy and the seconds of each row's whole train step (meta-training + 600-episode evaluation).

Everything goes through the core API: validate -> features (cached) -> the strategy from the registry; the
meta-training options are the config's (one model meta-trained at the config's shots, evaluated at 1 and 5 shots,
as `tlops run` does). Literature anchors (mini-ImageNet, a different and harder task: context only):
learn2learn MAML 5w1s 48.3, ProtoNets 5w5s 66.5; Meta-SGD paper 5w1s 50.5.

Run: `python -m bench.fewshot [--modalities text image audio] [--methods protonet maml ...] [--episodes 600] [--set K=V]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import REPO, save
from tlops.config import load_config
from tlops.pipeline import features_step, finish, train_step, validate_step

METHODS = {"protonet": ["strategy.name=protonet"], "maml": ["strategy.name=maml"], "fomaml": ["strategy.name=fomaml"],
           "meta_sgd": ["strategy.name=meta_sgd"], "anil": ["strategy.name=maml", "strategy.anil=true"]}
BASELINES = ["linear_probe", "protonet0", "finetune_support"]
BASELINE_NAMES = {"linear_probe": "linear probe on support (baseline)", "protonet0": "ProtoNet, no meta-training (baseline)",
                  "finetune_support": "fine-tune head on support (baseline)"}
ANCHORS = {"learn2learn MAML, mini-ImageNet 5w1s": 48.3, "learn2learn ProtoNets, mini-ImageNet 5w5s": 66.5,
           "Meta-SGD paper, mini-ImageNet 5w1s": 50.5}
SHOTS = (1, 5)


def config(modality: str, method: str, work: Path, episodes: int, baselines: list[str], overrides: list[str] = ()):
    shots = ",".join(map(str, SHOTS))
    cfg = load_config(REPO / "configs" / f"{modality}_fewshot.yaml",
                      [*METHODS[method], f"strategy.eval_shots=[{shots}]", f"strategy.eval_episodes={episodes}",
                       f"strategy.baselines=[{','.join(baselines)}]", *overrides])
    cfg.features.cache_dir = str(REPO / ".tlops" / "cache")
    cfg.execution.work_dir = str(work)  # checkpoints live here: never resume from an earlier bench run
    return cfg


def scores(rows) -> dict:
    return {f"5w{s.shots}s": {"accuracy": s.accuracy, "ci95": s.ci95, "episodes": s.episodes} for s in rows}


def run_modality(modality: str, methods: list[str], episodes: int, work: Path, overrides: list[str] = ()) -> dict:
    out: dict = {"config": f"configs/{modality}_fewshot.yaml", "methods": {}, "baselines": {}}
    feats = None
    for i, method in enumerate(methods):
        cfg = config(modality, method, work / method, episodes, BASELINES if i == 0 else [], overrides)
        if feats is None:  # every few-shot strategy needs the same splits: validate and featurise once
            t = time.perf_counter()
            validate_step(cfg)
            feats = features_step(cfg, work / "features")
            out |= {"backbone": cfg.backbone.name, "features_seconds": time.perf_counter() - t,
                    "feature_cache": {"hits": feats.cache.hits, "misses": feats.cache.misses},
                    "meta_options": cfg.strategy.model_dump(exclude={"name", "eval_shots", "eval_episodes", "baselines"})}
        t = time.perf_counter()
        result = train_step(cfg, feats, work / method / "train")
        wall = time.perf_counter() - t
        finish(result)  # drop checkpoints: a rerun meta-trains again (and is timed again)
        report = result.few_shot
        out["methods"][method] = {"scores": scores(report.model), "meta_train_seconds": result.seconds, "train_step_seconds": wall,
                                  "epochs_run": result.loop.epochs_run if result.loop else 0}
        for name, rows in report.baselines.items():
            out["baselines"][name] = {"scores": scores(rows)}
        out["skipped_shots"] = report.skipped_shots
        print(f"[{modality}] {method}: " + ", ".join(f"{k} {v['accuracy']:.3f}±{v['ci95']:.3f}"
                                                     for k, v in out["methods"][method]["scores"].items())
              + f"; meta-training {result.seconds:.1f} s", flush=True)
    return out


def markdown(results: dict) -> str:
    lines = []
    for modality, r in results.items():
        lines += [f"**{modality}** ({r['config']}, backbone `{r['backbone']}`)", "",
                  "| method | 5w1s acc ± 95% CI | 5w5s acc ± 95% CI | meta-training s |", "|---|---|---|---|"]
        rows = [(m, v["scores"], f"{v['meta_train_seconds']:.1f}") for m, v in r["methods"].items()]
        rows += [(BASELINE_NAMES[b], v["scores"], "0") for b, v in r["baselines"].items()]
        for name, sc, sec in rows:
            cell = [f"{100 * sc[k]['accuracy']:.1f} ± {100 * sc[k]['ci95']:.1f}" if k in sc else "n/a" for k in ("5w1s", "5w5s")]
            lines.append(f"| {name} | {cell[0]} | {cell[1]} | {sec} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modalities", nargs="+", default=["text", "image", "audio"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every method, e.g. strategy.meta_epochs=2 (as `tlops run --set`)")
    args = ap.parse_args()
    missing = [m for m in args.modalities if not (REPO / "configs" / f"{m}_fewshot.yaml").is_file()]
    if missing:
        raise SystemExit(f"no configs/<modality>_fewshot.yaml for {', '.join(missing)}; drop them from --modalities")
    results = {}
    with tempfile.TemporaryDirectory(prefix="tlops-bench-fewshot-") as tmp:
        for modality in args.modalities:
            results[modality] = run_modality(modality, args.methods, args.episodes, Path(tmp) / modality, args.overrides)
            save("fewshot.partial", {"results": results})
    save("fewshot", {"episodes": args.episodes, "shots": list(SHOTS), "overrides": args.overrides, "anchors": ANCHORS, "results": results})
    print(markdown(results))


if __name__ == "__main__":
    main()
