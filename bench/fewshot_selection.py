"""Few-shot selection on the support set (issue 30): does choosing per task from the support rows pick what the task's
own query rows (the oracle) would pick, and is the chosen candidate never worse than the best fixed candidate?

Per modality (configs/<modality>_fewshot.yaml, its demo data and real pretrained backbone) and seed: the config's
strategy meta-trains (its own meta_epochs unless --set), through the core API, the run registering its support choice
(selection.json, whose validation-episode accuracies give each candidate's prior); then on `--episodes` 5-way K-shot
episodes every candidate (`tlops.training.meta_selection.CANDIDATES`) is scored on the episode's support rows
(leave-one-shot-out held-out logits, the registration's own routine, batched over episodes: accuracy, log-loss and
Brier score) and on its query rows. Three episode sets per seed:
- `val`: validation episodes of the meta-training distribution (the demo's val classes; a stream other than the run's
  own validation episodes), where the selection RULE is chosen;
- `test`: the novel test classes (the run's own test episodes), reported once per rule;
- `cross` (with --cross MODALITY=DATA:SPLIT): episodes of another data set's classes embedded by the same backbone
  (data/text_wordnet_shift:test: example sentences of verb supersenses, where meta-training used noun hypernyms'
  definitions; bench/out/fewshot_audio_shift:test, built by bench/fewshot_audio_shift.py: novel words by foreign-accent
  voices), reported once per rule.
Every rule in `RULES` (the registered one is `meta_selection.RULE`) picks per episode; per seed: agreement with the
per-task oracle (tie-aware: the choice's query accuracy equals the best candidate's; strict: the choice is the oracle's
name, ties among the best going to the simpler candidate as the choice's own ties do), mean query accuracy of the
choice, of each fixed candidate and of the oracle; mean ± std over seeds. The credibility rule's z is chosen on the
val sets of every modality together (`choose_z`), and per set the registered rule gets a verdict (`verdicts`): its
accuracy vs the best no-adaptation candidate and that one's seed spread, agreement, and a CEILING: the agreement of a
set-level oracle (always the candidate best on the set's queries on average; it uses test labels). The raw per-episode arrays are kept in
bench/out/fewshot_selection_tables.npz (a later call adds its modalities to them), so rules can be compared again without meta-training (`--from-tables`).

Run: `python -m bench.fewshot_selection [--modalities text image audio] [--seeds 0 1 2] [--episodes 200]
[--cross text=data/text_wordnet_shift:test] [--set K=V]`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import OUT, REPO, save
from tlops.config import load_config
from tlops.pipeline import features_step, finish, train_step, validate_step
from tlops.strategies._episodic import VAL_CANDIDATE_EPISODES
from tlops.training import meta_selection as ms

STUDY_VAL_STREAM = 2000  # validation episodes use seed + this + shots: not the run's own (seed + 1)
METRICS = ("accuracy", "log_loss", "log_loss_cal", "brier_cal")
NAMES = list(ms.CANDIDATES)


def adapter_of(result, root: Path):
    """The run's packaged encoder + adaptation rule (`FewShotAdapter`), from the files a package would hold."""
    from tlops.fewshot_predictor import FewShotAdapter, package_files

    files, meta = package_files(result.meta_learner)
    for rel, src in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    return FewShotAdapter(root, meta)


def episode_table(adapter, x: np.ndarray, y: np.ndarray, shots: int, queries: int, episodes: int, stream: int) -> dict:
    """Per metric: held-out support scores (T, C) (C = `NAMES`), and query accuracies (T, C) of `episodes` 5-way episodes."""
    from tlops.training.episodes import EpisodeSampler, way_targets

    sampler = EpisodeSampler(y, 5, shots, queries, stream)
    ep = sampler.batch(0, episodes)
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    sy = way_targets(5, shots).numpy()
    logits = ms.heldout_logits(NAMES, adapter.encoder, adapter.learner, xt[ep.support], sy, 5)
    per = {n: ms.heldout_metrics(v, sy) for n, v in logits.items()}
    table = {f"support_{m}": np.stack([per[n][m] for n in NAMES], 1) for m in METRICS}
    truth = torch.as_tensor(sy, dtype=torch.long)  # per support row, whether each candidate's held-out prediction is right
    table["support_rows"] = np.stack([(logits[n].argmax(-1) == truth).numpy() for n in NAMES], 1).astype(np.int8)  # (T, C, S)
    # held-out and query logits, so that candidates built from these (ensembles, `ensemble_columns`) are scored offline
    table["support_logits"] = np.stack([logits[n].numpy() for n in NAMES], 1).astype(np.float32)  # (T, C, S, W)
    qy = way_targets(5, queries)
    qlog = []
    for start in range(0, episodes, 100):
        e = sampler.batch(start, min(100, episodes - start))
        sy_t = torch.as_tensor(sy).expand(len(e.support), -1)
        qlog.append(np.stack([ms.candidate_logits(n, adapter.encoder, adapter.learner, xt[e.support], sy_t, 5, xt[e.query]).numpy()
                              for n in NAMES], 1))
    table["query_logits"] = np.concatenate(qlog).astype(np.float32)  # (T, C, Q, W)
    table["query"] = (table["query_logits"].argmax(-1) == qy.numpy()).mean(-1)  # = ms.episode_accuracies, per candidate
    return table


# -- selection rules: (support metrics {metric: (T, C)}, validation-episode accuracies (C,), NaN = unknown) -> picks (T,) --

def _lexi(keys: list[np.ndarray]) -> np.ndarray:
    """Per row, the column that is best by keys[0] (higher is better), ties by keys[1], ..., then the earlier column."""
    best = np.ones(keys[0].shape, dtype=bool)
    for k in keys:
        k = np.where(best, np.round(k, 9), -np.inf)
        best &= k >= k.max(1, keepdims=True)
    return best.argmax(1)


def _val(val: np.ndarray, t: int) -> np.ndarray:
    return np.broadcast_to(np.nan_to_num(val, nan=-1.0), (t, len(val)))


def rule_fns(val_support: dict | None = None) -> dict:
    """The rules compared; `shrink` rules take their margin from `val_support` (the val episodes' tables, per seed)."""
    def simple(metric, sign, ties=None):
        def f(s, val):
            keys = [sign * s[metric]]
            if ties == "val":
                keys.append(_val(val, len(s[metric])))
            elif ties:
                keys.append(-s[ties])
            return _lexi(keys)
        return f

    def favourite(s, val):
        return np.full(len(s["accuracy"]), int(np.nanargmax(val)))

    return {
        "accuracy, ties to the simpler (meta30)": simple("accuracy", 1),
        "accuracy, ties by validation accuracy": simple("accuracy", 1, "val"),
        "accuracy, ties by calibrated log-loss": simple("accuracy", 1, "log_loss_cal"),
        "calibrated log-loss": simple("log_loss_cal", -1),
        "raw log-loss": simple("log_loss", -1),
        "calibrated Brier": simple("brier_cal", -1),
        "validation favourite (fixed)": favourite,
        **{f"shrink log-loss, margin {m:g}": shrink("log_loss_cal", m) for m in (0.02, 0.05, 0.1, 0.2)},
        **{f"shrink accuracy, margin {m:g}": shrink("accuracy", -m) for m in (0.04, 0.08, 0.12)},
        **{credible_name(z): credible(z) for z in Z_GRID},
        "registered rule (meta_selection.choose_task)": registered,
    }


Z_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)  # the credibility rule's z, chosen on val (`choose_z`)


def credible_name(z: float) -> str:
    return f"credibility, z {z:g}"


def credible(z: float):
    """`meta_selection.choose_task` with `z` standard errors, vectorised over tasks (25 held-out rows per task)."""
    def f(s, val):
        fav = int(np.nanargmax(val))
        acc = s["accuracy"]
        best = _lexi([np.round(acc, 9), _val(val, len(acc))])
        rows = s["rows"]
        a, b = (acc[np.arange(len(acc)), best] * rows + 1) / (rows + 2), (acc[:, fav] * rows + 1) / (rows + 2)
        lead = (acc[np.arange(len(acc)), best] - acc[:, fav]) / np.sqrt((a * (1 - a) + b * (1 - b)) / rows)
        return np.where((best != fav) & (lead > z + ms.TIE), best, fav)
    return f


def shrink(metric: str, margin: float):
    """The validation favourite unless the support's best candidate beats it by more than `margin` (log-loss: lower by;
    accuracy: the margin is given negative, higher by)."""
    def f(s, val):
        fav = int(np.nanargmax(val))
        if margin >= 0:  # a loss
            v = -s[metric]
        else:
            v = s[metric]
        best = _lexi([np.round(v, 9), _val(val, len(v))])
        gain = v[np.arange(len(v)), best] - v[:, fav]
        return np.where(gain > abs(margin) + 1e-9, best, fav)
    return f


def registered(s, val):
    """The product's rule, through its own function, per task."""
    out = []
    names = NAMES[:s["accuracy"].shape[1]]  # tables written before the pooled candidates have the five singles only
    for i in range(len(s["accuracy"])):
        scores = {n: {m: float(s[m][i, j]) for m in METRICS} for j, n in enumerate(names)}
        vals = {n: (None if np.isnan(val[j]) else float(val[j])) for j, n in enumerate(names)}
        out.append(names.index(ms.choose_task(scores, vals, s["rows"], order=names)[0]))
    return np.array(out)


def summarise(table: dict, val: np.ndarray, rule) -> dict:
    q = table["query"]
    names = NAMES[:q.shape[1]]  # tables written before the pooled candidates have the five singles only
    s = {m: table[f"support_{m}"] for m in METRICS}
    s["rows"] = table["support_rows"].shape[2] if "support_rows" in table else 25  # tables before it: 5-way 5-shot
    pick = rule(s, val)
    chosen = q[np.arange(len(q)), pick]
    oracle_name = (q >= q.max(1, keepdims=True) - 1e-9).argmax(1)  # ties among the best: the simpler
    fav = int(np.nanargmax(val))
    ceiling = int(np.argmax(np.round(q.mean(0), 9)))  # the set-level oracle: the best candidate on this set's queries
    return {"agreement": float((chosen >= q.max(1) - 1e-9).mean()), "agreement_strict": float((pick == oracle_name).mean()),
            "ceiling_agreement": float((q[:, ceiling] >= q.max(1) - 1e-9).mean()),
            "ceiling_strict": float((oracle_name == ceiling).mean()), "ceiling_name": names[ceiling],
            "overrides": int((pick != fav).sum()), "tasks": len(q),
            "chosen": float(chosen.mean()), "oracle": float(q.max(1).mean()),
            **{n: float(q[:, i].mean()) for i, n in enumerate(names)},
            "picked": {n: int((pick == i).sum()) for i, n in enumerate(names)}}


def cross_features(modality: str, spec: str, seed: int, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features (x, y) of DATA:SPLIT through the modality's fewshot config's backbone (cached): the config with the other
    data set and a linear probe as its strategy (a classification data set, not a few-shot one)."""
    import yaml

    data, split = spec.rsplit(":", 1)
    tree = yaml.safe_load((REPO / "configs" / f"{modality}_fewshot.yaml").read_text())
    tree.update(seed=seed, data={"path": str((REPO / data).resolve())}, strategy={"name": "linear_probe"}, validation={})
    (work / "cross").mkdir(parents=True, exist_ok=True)
    path = work / "cross" / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    cfg = load_config(path)
    cfg.features.cache_dir = str(REPO / ".tlops" / "cache")
    cfg.execution.work_dir = str(work / "cross")
    feats = features_step(cfg, work / "cross" / "features")
    return feats.arrays(split)


def run(modality: str, seeds: list[int], episodes: int, shots: int, overrides: list[str], cross: str | None, work: Path,
        tables: dict) -> dict:
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
        val = np.array([np.nan if record.candidate(n).scores.get(ms.FALLBACK) is None else record.candidate(n).scores[ms.FALLBACK]
                        for n in NAMES])
        adapter = adapter_of(result, work / f"seed{seed}" / "pkg")
        t = time.perf_counter()
        sets = {"valrun": (*feats.arrays("val"), seed + 1),  # the run's own validation episodes: candidates' priors (first 50)
                "val": (*feats.arrays("val"), seed + STUDY_VAL_STREAM + shots),
                "test": (*feats.arrays("test"), seed + 1000 + shots)}  # 1000: episodic_eval.EVAL_STREAM
        if cross:
            sets["cross"] = (*cross_features(modality, cross, seed, work), seed + 1000 + shots)
        for name, (x, y, stream) in sets.items():
            n_ep = VAL_CANDIDATE_EPISODES if name == "valrun" else episodes
            table = episode_table(adapter, x, y, shots, cfg.strategy.queries, n_ep, stream)
            for k, v in table.items():
                tables[f"{modality}/{seed}/{name}/{k}"] = v
        tables[f"{modality}/{seed}/val_scores"] = val
        np.savez(OUT / "fewshot_selection_tables.npz", **tables)  # after every seed: a long call stopped early keeps its seeds
        out["seeds"][seed] = {"registered": record.chosen, "registered_why": record.why, "registered_criterion": record.criterion,
                              "oracle_registered": record.oracle, "val_scores": dict(zip(NAMES, val.tolist())),
                              "registered_support_accuracy": {n: record.candidate(n).scores.get(ms.CRITERION) for n in NAMES},
                              "train_seconds": seconds, "selection_seconds": time.perf_counter() - t}
        print(f"[{modality} seed {seed}] registered {record.chosen} ({record.criterion}); tables in {time.perf_counter() - t:.0f} s",
              flush=True)
    return out


def evaluate(tables: dict) -> dict:
    """Every rule on every (modality, seed, episode set) in `tables`: {modality: {set: {rule: {seed: summary}}}}."""
    keys = sorted({tuple(k.split("/")[:3]) for k in tables if k.count("/") == 3})
    out: dict = {}
    for modality, seed, name in keys:
        table = {k.split("/")[3]: v for k, v in tables.items() if k.startswith(f"{modality}/{seed}/{name}/")}
        val = tables[f"{modality}/{seed}/val_scores"]
        for rule, fn in rule_fns().items():
            out.setdefault(modality, {}).setdefault(name, {}).setdefault(rule, {})[seed] = summarise(table, val, fn)
    return out


def cell(rows: list[dict], key: str) -> str:
    v = np.array([r[key] for r in rows])
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def markdown(ev: dict, shots: int, episodes: int) -> str:
    lines = []
    for modality, sets in ev.items():
        for name, rules in sets.items():
            any_rule = next(iter(rules.values()))
            rows = list(any_rule.values())
            fixed = " · ".join(f"{n} {cell(rows, n)}" for n in NAMES if n in rows[0])
            head = (f"**{modality}, {name} episodes** (5-way {shots}-shot, {episodes} per seed, seeds {', '.join(map(str, any_rule))}): "
                    f"fixed candidates {fixed} · oracle per task {cell(rows, 'oracle')}")
            lines += ["", head, "",
                      "| rule | agreement (tie-aware) | agreement (strict name) | chosen accuracy | picked (summed over seeds) |",
                      "|---|---:|---:|---:|---|"]
            for rule, per_seed in rules.items():
                rs = list(per_seed.values())
                picked = {n: sum(r["picked"][n] for r in rs) for n in rs[0]["picked"]}
                lines.append(f"| {rule} | {cell(rs, 'agreement')} | {cell(rs, 'agreement_strict')} | {cell(rs, 'chosen')} | "
                             + ", ".join(f"{n} {c}" for n, c in picked.items() if c) + " |")
    return "\n".join(lines)


def choose_z(ev: dict) -> tuple[float, str]:
    """The credibility rule's z chosen on the `val` episodes of every modality together: the best mean over modalities
    of the choice's val accuracy (each modality's mean over its seeds), ties by the mean val agreement (tie-aware), then
    the smaller z: rules tied on both made the same choices on val, where the validation favourite was measured on
    the very classes scored (so val cannot reward the support evidence, which is there for shifts val cannot see), and
    the smaller z is the one that still listens to it. Returns (z, a markdown table of every z's val numbers)."""
    modalities = [m for m in ev if "val" in ev[m]]
    rows, best = [], None
    for z in Z_GRID:
        per = {m: list(ev[m]["val"][credible_name(z)].values()) for m in modalities}
        acc = {m: float(np.mean([r["chosen"] for r in rs])) for m, rs in per.items()}
        agr = {m: float(np.mean([r["agreement"] for r in rs])) for m, rs in per.items()}
        key = (round(float(np.mean(list(acc.values()))), 6), round(float(np.mean(list(agr.values()))), 6), -z)
        best = max(best, key) if best else key
        rows.append(f"| {z:g} | " + " | ".join(f"{acc[m]:.4f} / {agr[m]:.3f}" for m in modalities)
                    + f" | {key[0]:.4f} | {key[1]:.3f} |")
    head = ["| z | " + " | ".join(f"{m} val: accuracy / agreement" for m in modalities) + " | mean accuracy | mean agreement |",
            "|---:|" + "---|" * len(modalities) + "---:|---:|"]
    return -best[2], "\n".join(head + rows)


def verdicts(ev: dict, rule: str) -> str:
    """Per (modality, episode set): `rule`'s accuracy vs the best no-adaptation candidate (`meta_selection.FROZEN`) and
    its seed spread (met: within it), agreement tie-aware / strict, and the CEILING (a set-level oracle: the candidate
    best on the set's test queries on average, per task; it uses test labels)."""
    lines = [("| set | seeds x episodes | rule's accuracy | best no-adaptation (spread) | difference | never worse by more than the spread? | "
              "best candidate | agreement tie-aware / strict | ceiling (set-level oracle) tie-aware / strict | overrides of the favourite |"),
             "|---|---|---:|---|---:|---|---|---|---|---:|"]
    for modality, sets in ev.items():
        for name, rules in sets.items():
            rs = list(rules[rule].values())
            chosen = np.array([r["chosen"] for r in rs])
            base = {n: np.array([r[n] for r in rs]) for n in ms.FROZEN}
            b = max(base, key=lambda n: base[n].mean())
            allc = {n: np.mean([r[n] for r in rs]) for n in NAMES if n in rs[0]}
            top = max(allc, key=allc.get)
            spread = base[b].std(ddof=1) if len(rs) > 1 else float("nan")
            diff = chosen.mean() - base[b].mean()
            met = "n/a (1 seed)" if len(rs) < 2 else ("met" if diff >= -spread - 1e-9 else "**NOT met**")
            lines.append(f"| {modality} {name} | {len(rs)} x {rs[0]['tasks']} | {cell(rs, 'chosen')} | {b} {base[b].mean():.3f} ± {spread:.3f} | "
                         f"{100 * diff:+.1f} pt | {met} | {top} {allc[top]:.3f} | {cell(rs, 'agreement')} / {cell(rs, 'agreement_strict')} | "
                         f"{cell(rs, 'ceiling_agreement')} / {cell(rs, 'ceiling_strict')} ({', '.join(sorted({r['ceiling_name'] for r in rs}))}) | "
                         f"{sum(r['overrides'] for r in rs)}/{sum(r['tasks'] for r in rs)} |")
    return "\n".join(lines)


def report(ev: dict, shots: int, episodes: int) -> str:
    z, ztable = choose_z(ev)
    reg = "registered rule (meta_selection.choose_task)"
    return "\n".join([markdown(ev, shots, episodes), "", "**z chosen on val (all modalities together)**", "", ztable, "",
                      f"chosen z = {z:g} (meta_selection.PRIOR_Z = {ms.PRIOR_Z:g})", "", f"**Verdicts, `{reg}`**", "",
                      verdicts(ev, reg), "", f"**Verdicts, {credible_name(z)}**", "", verdicts(ev, credible_name(z))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modalities", nargs="+", default=["text", "image", "audio"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--cross", action="append", default=[], metavar="MODALITY=DATA:SPLIT",
                    help="also score episodes of another data set's classes (e.g. text=data/text_wordnet_shift:test)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--from-tables", action="store_true", help="re-evaluate the rules on the saved per-episode tables only")
    args = ap.parse_args()
    path = OUT / "fewshot_selection_tables.npz"
    if args.from_tables:
        tables = dict(np.load(path))
        print(report(evaluate(tables), args.shots, args.episodes))
        return
    torch.set_num_threads(1)  # tiny batched fits: a second thread only contends on a shared 2-core machine
    cross = dict(c.split("=", 1) for c in args.cross)
    results = {}
    tables = dict(np.load(path)) if path.is_file() else {}  # other modalities' tables from an earlier call are kept
    with tempfile.TemporaryDirectory(prefix="tlops-bench-fewshot-selection-") as tmp:
        for modality in args.modalities:
            results[modality] = run(modality, args.seeds, args.episodes, args.shots, args.overrides, cross.get(modality),
                                    Path(tmp) / modality, tables)
            OUT.mkdir(parents=True, exist_ok=True)
            np.savez(path, **tables)
    ev = evaluate({k: v for k, v in tables.items() if k.split("/")[0] in args.modalities})
    save("fewshot_selection", {"episodes": args.episodes, "shots": args.shots, "overrides": args.overrides, "cross": cross,
                               "runs": results, "rules": ev})
    print(report(ev, args.shots, args.episodes))


if __name__ == "__main__":
    main()
