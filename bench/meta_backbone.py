"""Meta-transfer with trainable top backbone groups (issue 12, `strategy.trainable`): ProtoNet meta-trained on the
cached frozen features (trainable 0) vs with the backbone's top N groups meta-trained too (raw inputs through the
backbone at every step), and for the MAML family with the top M of them adapted per task in the inner loop too
(`--inner-groups M`), on the demo few-shot data and the config's real pretrained backbone. 5-way 1-shot and
5-shot accuracy over the same test episodes (novel classes), mean and 95% CI, the frozen-feature ProtoNet
baseline (`protonet0`) on those episodes, and the meta-training seconds.

Run: `python -m bench.meta_backbone [--modality text] [--method maml] [--trainable 0 1] [--inner-groups 0 1] [--episodes 600]
[--set K=V]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import save
from bench.fewshot import config, scores
from tlops.pipeline import features_step, finish, train_step, validate_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modality", default="text")
    ap.add_argument("--method", default="protonet", choices=["protonet", "maml", "fomaml", "meta_sgd"])
    ap.add_argument("--trainable", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--inner-groups", nargs="+", type=int, default=[0], help="MAML family: top groups the inner loop adapts "
                                                                             "(runs with inner groups > trainable are skipped)")
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    out: dict = {"modality": args.modality, "method": args.method, "episodes": args.episodes, "overrides": args.overrides, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="tlops-bench-meta-backbone-") as tmp:
        feats = None
        for n, m in [(n, m) for n in args.trainable for m in args.inner_groups if m <= n]:
            key = f"{n}" if m == 0 else f"{n}+inner{m}"
            work = Path(tmp) / f"trainable-{key}"
            inner = [f"strategy.inner_groups={m}"] if m else []
            cfg = config(args.modality, args.method, work, args.episodes, ["protonet0"], [*args.overrides, f"strategy.trainable={n}", *inner])
            if feats is None:
                validate_step(cfg)
                feats = features_step(cfg, Path(tmp) / "features")
            t = time.perf_counter()
            result = train_step(cfg, feats, work / "train")
            wall = time.perf_counter() - t
            finish(result)
            report = result.few_shot
            out["runs"][key] = {"scores": scores(report.model), "protonet0": scores(report.baselines["protonet0"]),
                              "meta_train_seconds": result.seconds, "train_step_seconds": wall,
                              "epochs_run": result.loop.epochs_run, "best_epoch": result.loop.best_epoch,
                              "best_val_episode_accuracy": result.history[result.loop.best_epoch]["val_episode_accuracy"],
                              "train_episode_accuracy": [h.get("train_episode_accuracy") for h in result.history]}
            print(f"trainable {key}: " + ", ".join(f"{k} {v['accuracy']:.3f}±{v['ci95']:.3f}" for k, v in out["runs"][key]["scores"].items())
                  + " | protonet0 " + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in out["runs"][key]["protonet0"].items())
                  + f" | meta-training {result.seconds:.0f} s, {result.loop.epochs_run} epochs (best {result.loop.best_epoch})", flush=True)
            save("meta_backbone.partial", out)
    save("meta_backbone", out)


if __name__ == "__main__":
    main()
