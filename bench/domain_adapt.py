"""Domain adaptation on the demo shifts (configs/*_domain_adapt.yaml, features mode), as `tlops run` registers it:
per modality, seed and method (DANN, CDAN, MMD, CORAL), one run with the source_only baseline as a candidate
(`baseline: true`), collapse guards and the agreement choice (tlops.training.selection). Reported per method,
mean +- std over seeds of the target-test macro-F1 of:
- `source_only`: the baseline candidate (its epoch chosen by the config's `selection`, no target labels);
- `adapted`: the method's candidate (epoch x trade_off by `selection`: what the run registered before issue 30);
- `registered`: the candidate the guarded agreement registers (source_only or the adapted one);
- `oracle`: the best of those candidates by target-test labels (for judging the choice only, never used to make it);
plus how often the adapted candidate was registered, excluded as collapsed, and the registered model's gap to
source_only. Target-test macro-F1 is read from the run's own record (`selection.json`'s oracle column).

Run: `python -m bench.domain_adapt [--modalities image audio text] [--seeds 0 1 2] [--epochs 10] [--trade-off 1.0]`;
`--modalities image:fashion_noise image:fashion_contrast audio:keywords_noise` runs the corruption shifts of
bench/da_shifts.py with the modality's demo config.
Small on purpose (a 2-core shared machine): features mode, few epochs, one trade_off by default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import OUT, REPO, save
from tlops.config import load_config
from tlops.pipeline import features_step, train_step
from tlops.selection_record import SelectionRecord, selection_file

METHODS = ("dann", "cdan", "mmd", "coral")
FEATURES_COLUMNS = ("features:source_only", "features:adabn")  # a finetune run's default features-mode candidates


def config(modality: str, method: str, seed: int, work: Path, overrides: list[str] = ()):
    """The modality's demo config; `modality` "image:fashion_noise" takes a shift of bench.da_shifts as its data."""
    modality, _, shift = modality.partition(":")
    if shift:
        from bench.da_shifts import build

        overrides = [f"data.path={build(shift)}", *overrides]
    cfg = load_config(REPO / "configs" / f"{modality}_domain_adapt.yaml", [f"strategy.method={method}", f"seed={seed}", *overrides])
    cfg.features.cache_dir = str(REPO / ".tlops" / "cache")
    cfg.execution.work_dir = str(work)  # checkpoints live here (a fresh temporary folder): never resume from an earlier bench run
    return cfg


def run_one(cfg, feats, work: Path) -> dict:
    t0 = time.perf_counter()
    rec = train_step(cfg, feats, work / "train")
    seconds = time.perf_counter() - t0
    record = SelectionRecord.load(selection_file(rec))
    # the method's own candidate (a finetune run also has features-mode ones, named features:<method>)
    adapted = next(c for c in record.candidates if c.name != "source_only" and not c.name.startswith("features:"))
    extra = {k: record.oracle[k] for k in FEATURES_COLUMNS if k in record.oracle}
    return {**extra, "chosen": record.chosen, "why": record.why, "oracle_by_candidate": record.oracle,
            "source_only": record.oracle["source_only"], "adapted": record.oracle[adapted.name],
            "registered": record.oracle[record.chosen], "oracle": max(record.oracle.values()),
            "adapted_excluded": adapted.excluded, "adapted_votes": adapted.scores.get("votes"),
            "candidates": [c.model_dump() for c in record.candidates], "train_seconds": round(seconds, 2)}


def mean_std(xs: list[float]) -> dict:
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": xs}


def summarise(runs: dict, seeds: list[int]) -> dict:
    out = {}
    for m, by_seed in runs.items():
        rs = [by_seed[s] for s in seeds if s in by_seed]
        if not rs:
            continue
        out[m] = {k: mean_std([r[k] for r in rs]) for k in ("source_only", "adapted", "registered", "oracle", *FEATURES_COLUMNS)
                  if all(k in r for r in rs)}
        out[m]["registered_by_mode"] = {mode: sum(r["chosen"].startswith("features:") == (mode == "features") for r in rs)
                                        for mode in ("finetune", "features")}
        out[m]["adapted_registered"] = sum(r["chosen"] not in ("source_only", "features:source_only") for r in rs)
        out[m]["adapted_excluded"] = sum(r["adapted_excluded"] is not None for r in rs)
        out[m]["registered_minus_source_only"] = statistics.mean(r["registered"] - r["source_only"] for r in rs)
        out[m]["runs"] = len(rs)
        if all("features:source_only" in r for r in rs):  # a finetune run's other no-adaptation model
            out[m]["registered_minus_features_source_only"] = statistics.mean(r["registered"] - r["features:source_only"] for r in rs)
    return out


def main(modalities: list[str], seeds: list[int], epochs: int, trade_off: float, methods: list[str],
         name: str = "domain_adapt", extra: list[str] = ()) -> dict:
    """`name` is the output's file stem under bench/out (two benches at once must not share it); `extra` are more
    `--set`-style config overrides (e.g. strategy.mode=finetune), applied after the bench's own."""
    overrides = [f"strategy.epochs={epochs}", f"strategy.trade_off={trade_off}", "strategy.selection_rows=500", "strategy.baseline=true",
                 *extra]
    out: dict = {"seeds": seeds, "epochs": epochs, "trade_off": trade_off, "overrides": overrides, "runs": {}, "summary": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for modality in modalities:
            feats = features_step(config(modality, "dann", 0, tmp / modality), tmp / modality / "features")
            runs: dict = {m: {} for m in methods}
            for seed in seeds:
                for method in methods:
                    # checkpoints per seed: source_only's candidate has the same options in every method's run, so the
                    # second method resumes it complete instead of training it again (same rows: the loop's resume)
                    work = tmp / modality / f"{method}-{seed}"
                    cfg = config(modality, method, seed, tmp / modality / f"seed-{seed}", overrides)
                    runs[method][seed] = r = run_one(cfg, feats, work)
                    OUT.mkdir(parents=True, exist_ok=True)  # partial results survive an interrupted bench (a shared machine)
                    (OUT / f"{name}.partial.json").write_text(json.dumps({**out, "runs": {**out["runs"], modality: runs}}, indent=1))
                    print(modality, seed, method, {k: r[k] for k in ("chosen", "source_only", "adapted", "registered", "oracle",
                                                                     "adapted_excluded", "adapted_votes", "train_seconds")}, flush=True)
            out["runs"][modality] = runs
            out["summary"][modality] = summarise(runs, seeds)
    return save(name, out)


def markdown(result: dict) -> str:
    """The summary as the RESULTS.md tables."""
    lines = []
    for modality, table in result["summary"].items():
        extra = [k for k in FEATURES_COLUMNS if all(k in t for t in table.values())]
        header = ("| method | source_only | adapted (criterion only) | " + "".join(f"{k} | " for k in extra) +
                  "registered (guarded agreement) | oracle | adapted registered / excluded | registered - source_only |")
        lines += [f"**{modality}**", "", header, "|---|---|---|" + "---|" * len(extra) + "---|---|---|---|"]
        for m, t in table.items():
            def f(k: str, t: dict = t) -> str:
                return f"{t[k]['mean']:.3f} ± {t[k]['std']:.3f}"

            lines.append(f"| {m} | {f('source_only')} | {f('adapted')} | " + "".join(f"{f(k)} | " for k in extra) +
                         f"{f('registered')} | {f('oracle')} | "
                         f"{t['adapted_registered']}/{t['runs']} / {t['adapted_excluded']}/{t['runs']} | "
                         f"{100 * t['registered_minus_source_only']:+.1f} points |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--modalities", nargs="*", default=["image", "audio", "text"],
                   help="demo shifts by modality; MODALITY:SHIFT takes a shift of bench.da_shifts (e.g. image:fashion_noise)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--trade-off", type=float, default=1.0)
    p.add_argument("--name", default="domain_adapt", help="output file stem under bench/out (default domain_adapt)")
    p.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                   help="another config override for every run, e.g. --set strategy.mode=finetune")
    p.add_argument("--markdown", metavar="JSON", help="print the RESULTS tables of a saved result and exit")
    a = p.parse_args()
    if a.markdown:
        print(markdown(json.loads(Path(a.markdown).read_text())))
    else:
        print(markdown(main(a.modalities, a.seeds, a.epochs, a.trade_off, a.methods, a.name, a.extra)))
