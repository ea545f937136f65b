"""Ensembles as few-shot candidates (issue 30, session 14), scored offline on bench/fewshot_selection.py's tables.

Issue 30's bar "the registered model never worse than the best no-adaptation baseline by more than the seed spread"
fails on the audio cross set because 25 support rows cannot detect a 1-point difference between candidates, so the
rule is its prior (the validation favourite), and no single fixed candidate is the best no-adaptation one everywhere.
An ensemble does not need the support set to tell the candidates apart: it pools them.

Pooling (`pool`): each member's logits are divided by its own temperature, the one of `meta_selection.TEMPERATURES`
that minimises the log-loss of its held-out support logits (leave-one-shot-out, the selection's own folds), and the
calibrated logits are averaged: a log-linear opinion pool (the normalised geometric mean of the members' calibrated
probabilities). Why this one:
- the candidates' logit scales differ by orders of magnitude (protonet0's are squared distances in the standardised
  feature space, finetune_support's come from 100 AdamW steps), so an uncalibrated sum is the largest-scale member's
  vote (`raw` below, reported for that reason);
- the temperature is fitted on held-out rows (a head's logits on its own fitting rows are over-confident), from the
  logits the selection computes anyway: no extra fit;
- the average of calibrated logits is again a linear function of each member's logits, so an ensemble of linear heads
  on the frozen features is one linear head, and one mixing those with heads on the meta-learned embedding is one MLP
  head (exactly: GELU(u) - GELU(-u) = u), i.e. the registered package format is unchanged. The arithmetic mean of the
  calibrated probabilities (`mean_prob` below, reported for comparison) is not.
The ensemble's own held-out support logits pool the members' held-out logits with the same temperatures (fitted on
those rows: one scalar per member, a small optimism in its support accuracy, reported).

Candidate sets (`SETS`) extend the five candidates with ensembles; per set, the registered rule (credibility z with the
validation favourite as prior; the ensemble's prior: its accuracy on the run's own 50 validation episodes, the tables'
`valrun` set, as every candidate's) picks per episode. Set and z are chosen on the `val` episodes of every modality
together (best mean val accuracy of the choice, ties by agreement, then the smaller set, then the smaller z); test and
cross verdicts are reported for every set, against two bars: the best single no-adaptation candidate (`FROZEN`), and the
best of those and the frozen-only ensembles (a skeptic's no-adaptation baseline).

Run: `python -m bench.fewshot_ensemble [--tables bench/out/fewshot_selection_tables.npz]`.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.special import log_softmax, logsumexp

from bench.common import OUT
from bench.fewshot_selection import _lexi, _val, credible
from tlops.training import meta_selection as ms

TEMPS = ms.TEMPERATURES.numpy().astype(np.float64)
NAMES = list(ms.SINGLES)  # the tables' first columns (later ones: the product's own pools, `meta_selection.ENSEMBLES`)
ENSEMBLES = {  # name -> members (all calibrated log-linear pools unless the name says otherwise)
    "ens_frozen2": ("linear_probe", "finetune_support"),
    "ens_frozen3": ("protonet0", "linear_probe", "finetune_support"),
    "ens_lp_mp": ("linear_probe", "meta_probe"),
    "ens3": ("linear_probe", "finetune_support", "meta_probe"),
    "ens5": tuple(NAMES),
    "ens3_mean_prob": ("linear_probe", "finetune_support", "meta_probe"),
    "ens3_raw": ("linear_probe", "finetune_support", "meta_probe"),
}
FROZEN_ENSEMBLES = ("ens_frozen2", "ens_frozen3")
SETS = {  # candidate sets the rule chooses among (base candidates first: ties go to the simpler)
    "5 candidates (now)": (),
    "+ ens3": ("ens3",),
    "+ ens5": ("ens5",),
    "+ ens_lp_mp": ("ens_lp_mp",),
    "+ ens_frozen3": ("ens_frozen3",),
    "+ ens_frozen2": ("ens_frozen2",),
    "+ ens3 + ens_frozen3": ("ens3", "ens_frozen3"),
    "+ ens3 + ens5": ("ens3", "ens5"),
}
Z_GRID = (0.0, 1.0, 2.0, 2.5, 3.0, 1e9)  # 1e9: never override (the favourite)


def temperatures(support_logits: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """(T,) per episode, the grid temperature minimising the held-out log-loss of logits (T, S, W) (`ms.heldout_metrics`)."""
    x = np.nan_to_num(support_logits.astype(np.float64), nan=0.0, posinf=1e6, neginf=-1e6)
    lp = log_softmax(x[None] / TEMPS[:, None, None, None], -1)  # (G, T, S, W)
    nll = -np.take_along_axis(lp, np.broadcast_to(sy, lp.shape[:3])[..., None], -1)[..., 0].mean(-1)
    return TEMPS[nll.argmin(0)]


def pool(logits: list[np.ndarray], temps: list[np.ndarray], how: str = "log_linear") -> np.ndarray:
    """Pooled logits (T, R, W) of members' logits (T, R, W) each, with per-episode temperatures (T,)."""
    scaled = [np.nan_to_num(lg.astype(np.float64), nan=0.0, posinf=1e6, neginf=-1e6) / t[:, None, None] for lg, t in zip(logits, temps)]
    if how == "log_linear":
        return np.mean(scaled, 0)
    if how == "mean_prob":
        return logsumexp(np.stack([log_softmax(s, -1) for s in scaled]), 0) - np.log(len(scaled))
    if how == "raw":
        return np.mean([np.nan_to_num(lg.astype(np.float64), nan=0.0, posinf=1e6, neginf=-1e6) for lg in logits], 0)
    raise ValueError(how)


def how_of(name: str) -> str:
    return "mean_prob" if name.endswith("_mean_prob") else "raw" if name.endswith("_raw") else "log_linear"


def extend(table: dict) -> dict:
    """A set's table with the ensembles' columns: support accuracy (T, C'), support rows (T, C', S), query (T, C')."""
    c = len(NAMES)
    product = {n: table["query"][:, c + i] for i, n in enumerate(ms.ENSEMBLES) if table["query"].shape[1] > c + i}
    table = {k: (v[:, :c] if k in ("support_accuracy", "support_rows", "support_logits", "query_logits", "query") else v)
             for k, v in table.items()}
    sl, ql = table["support_logits"], table["query_logits"]  # (T, C, S, W), (T, C, Q, W)
    t, _, s, w = sl.shape
    sy = np.repeat(np.arange(w), s // w)
    qy = np.repeat(np.arange(w), ql.shape[2] // w)
    temps = {n: temperatures(sl[:, i], sy) for i, n in enumerate(NAMES)}
    acc, rows, query = [table["support_accuracy"]], [table["support_rows"]], [table["query"]]
    for e, members in ENSEMBLES.items():
        idx = [NAMES.index(m) for m in members]
        hs = pool([sl[:, i] for i in idx], [temps[m] for m in members], how_of(e))
        hq = pool([ql[:, i] for i in idx], [temps[m] for m in members], how_of(e))
        r = (hs.argmax(-1) == sy).astype(np.int8)
        rows.append(r[:, None])
        acc.append(r.mean(-1, keepdims=True))
        query.append((hq.argmax(-1) == qy).mean(-1, keepdims=True))
    return {"accuracy": np.concatenate(acc, 1).astype(np.float64), "rows": np.concatenate(rows, 1), "query": np.concatenate(query, 1),
            "temps": temps, "product": product}


ALL = [*NAMES, *ENSEMBLES]


def shift_aware(z_shift: float, frozen: list[int]):
    """Optional rule D: the validation favourite, unless its own support accuracy is below its validation-episode
    accuracy by more than `z_shift` binomial standard errors of the support's n rows (the domain moved): then the frozen
    candidate (`frozen`: column indices) best on the support rows (ties by validation accuracy, then the simpler)."""
    def f(s, val):
        fav = int(np.nanargmax(val))
        acc, n = s["accuracy"], s["rows"]
        p = (acc[:, fav] * n + 1) / (n + 2)
        drop = (val[fav] - acc[:, fav]) / np.sqrt(p * (1 - p) / n)
        keys = np.where(np.isin(np.arange(acc.shape[1]), frozen), np.round(acc, 9), -np.inf)
        best = _lexi([keys, np.where(np.isfinite(keys), _val(val, len(acc)), -np.inf)])
        return np.where(drop > z_shift + ms.TIE, best, fav)
    return f


def summarise(ext: dict, val: np.ndarray, cols: list[int], z: float, rule=None) -> dict:
    """The credibility rule (z; favourite = best `val` among `cols`; or `rule`) on one set's extended table, restricted
    to `cols`."""
    q = ext["query"][:, cols]
    s = {"accuracy": ext["accuracy"][:, cols], "rows": ext["rows"].shape[2]}
    pick = (rule or credible(z))(s, val[cols])
    chosen = q[np.arange(len(q)), pick]
    oracle_name = (q >= q.max(1, keepdims=True) - 1e-9).argmax(1)
    ceiling = int(np.argmax(np.round(q.mean(0), 9)))
    fav = int(np.nanargmax(val[cols]))
    q5 = ext["query"][:, :len(NAMES)]  # the five single candidates' per-task oracle (part 3's, comparable across sets)
    return {"chosen": float(chosen.mean()), "agreement": float((chosen >= q.max(1) - 1e-9).mean()),
            "agreement5": float((chosen >= q5.max(1) - 1e-9).mean()),
            "agreement_strict": float((pick == oracle_name).mean()),
            "ceiling_agreement": float((q[:, ceiling] >= q.max(1) - 1e-9).mean()), "ceiling_strict": float((oracle_name == ceiling).mean()),
            "ceiling_name": ALL[cols[ceiling]], "overrides": int((pick != fav).sum()), "tasks": len(q), "favourite": ALL[cols[fav]],
            "picked": {ALL[c]: int((pick == i).sum()) for i, c in enumerate(cols)}}


def load(path) -> tuple[dict, dict]:
    """({(modality, seed, set): extended table}, {(modality, seed): val priors (C',)}) from the tables' npz."""
    tables = dict(np.load(path))
    keys = sorted({tuple(k.split("/")[:3]) for k in tables if k.count("/") == 3})
    ext, priors = {}, {}
    for modality, seed, name in keys:
        table = {k.split("/")[3]: v for k, v in tables.items() if k.startswith(f"{modality}/{seed}/{name}/")}
        if "query_logits" not in table:
            continue  # tables from before session 14: no logits, no ensembles
        ext[(modality, seed, name)] = extend(table)
    for (modality, seed, name), e in ext.items():
        if name == "valrun":
            v = e["query"].mean(0)
            rec = tables[f"{modality}/{seed}/val_scores"]
            assert np.allclose(v[:len(NAMES)], rec[:len(NAMES)], atol=1e-6), (modality, seed, v, rec)  # the record's priors, reproduced
            priors[(modality, seed)] = v
    return ext, priors


def cell(v) -> str:
    v = np.asarray(v, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def report(ext: dict, priors: dict) -> str:
    groups: dict = {}
    for (modality, seed, name) in ext:
        if name != "valrun" and (modality, seed) in priors:
            groups.setdefault((modality, name), []).append(seed)
    same = {"ensemble": "ens3", "ensemble_all": "ens5"}  # the product's pools (`ms.ENSEMBLES`) and their offline twins
    diffs = [float(np.abs(e["product"][n] - e["query"][:, ALL.index(same[n])]).max()) for e in ext.values() for n in e["product"]]
    out = [f"Product pools vs their offline twins: {len(diffs)} (set, pool) pairs, largest per-episode query-accuracy difference "
           f"{max(diffs) if diffs else float('nan'):.4f}", "", "**Fixed candidates** (query accuracy, mean ± std over seeds; ensembles: calibrated log-linear pools unless named)", "",
           "| set | " + " | ".join(ALL) + " | oracle (5) |", "|---|" + "---:|" * (len(ALL) + 1)]
    for (modality, name), seeds in sorted(groups.items()):
        per = [ext[(modality, s, name)]["query"] for s in seeds]
        out.append(f"| {modality} {name} | " + " | ".join(cell([p[:, i].mean() for p in per]) for i in range(len(ALL)))
                   + f" | {cell([p[:, :len(NAMES)].max(1).mean() for p in per])} |")
    out += ["", "**Validation priors** (the run's 50 validation episodes; mean over seeds)", "",
            "| modality | " + " | ".join(ALL) + " |", "|---|" + "---:|" * len(ALL)]
    for m in sorted({m for m, _ in priors}):
        v = np.mean([priors[k] for k in priors if k[0] == m], 0)
        out.append(f"| {m} | " + " | ".join(f"{x:.3f}" for x in v) + " |")
    # choice of (set, z) on val
    res = {}
    for sname, extra in SETS.items():
        cols = list(range(len(NAMES))) + [ALL.index(e) for e in extra]
        for z in Z_GRID:
            for (modality, name), seeds in groups.items():
                res[(sname, z, modality, name)] = [summarise(ext[(modality, s, name)], priors[(modality, s)], cols, z) for s in seeds]
    modalities = sorted({m for m, n in groups if n == "val"})
    out += ["", "**Choice on val** (mean over modalities of each modality's mean val accuracy of the choice / agreement tie-aware)", "",
            "| candidate set | z | " + " | ".join(f"{m} val acc / agr" for m in modalities) + " | mean accuracy | mean agreement |",
            "|---|---:|" + "---|" * len(modalities) + "---:|---:|"]
    best = None
    for i, sname in enumerate(SETS):
        for z in Z_GRID:
            acc = [np.mean([r["chosen"] for r in res[(sname, z, m, "val")]]) for m in modalities]
            agr = [np.mean([r["agreement"] for r in res[(sname, z, m, "val")]]) for m in modalities]
            key = (round(float(np.mean(acc)), 6), round(float(np.mean(agr)), 6), -i, -z)
            best = max(best, key) if best else key
            out.append(f"| {sname} | {z:g} | " + " | ".join(f"{a:.4f} / {g:.3f}" for a, g in zip(acc, agr))
                       + f" | {np.mean(acc):.4f} | {np.mean(agr):.3f} |")
    chosen_set, chosen_z = list(SETS)[-best[2]], -best[3]
    out += ["", f"chosen on val: **{chosen_set}, z {chosen_z:g}**", ""]
    for sname in SETS:
        for z in sorted({ms.PRIOR_Z, chosen_z}) if sname == chosen_set else [ms.PRIOR_Z]:
            out += ["", f"**Verdicts: {sname}, z {z:g}**" + (" (chosen on val)" if (sname, z) == (chosen_set, chosen_z) else ""), "",
                    "| set | rule's accuracy | bar 1: best single no-adaptation (spread) | diff | met? | bar 2: incl. frozen ensembles (spread) | diff | met? "
                    "| best candidate | agreement tie-aware / strict | tie-aware vs the 5 singles' oracle | ceiling tie-aware / strict | overrides | picked |",
                    "|---|---:|---|---:|---|---|---:|---|---|---|---|---|---:|---|"]
            for (modality, name), seeds in sorted(groups.items()):
                rs = res[(sname, z, modality, name)]
                chosen = np.array([r["chosen"] for r in rs])
                q = {n: np.array([ext[(modality, s, name)]["query"][:, ALL.index(n)].mean() for s in seeds]) for n in ALL}
                cells = []
                for bar in (ms.FROZEN, (*ms.FROZEN, *FROZEN_ENSEMBLES)):
                    b = max(bar, key=lambda n: q[n].mean())
                    spread = q[b].std(ddof=1) if len(seeds) > 1 else float("nan")
                    diff = chosen.mean() - q[b].mean()
                    met = "n/a" if len(seeds) < 2 else ("met" if diff >= -spread - 1e-9 else "**NOT met**")
                    cells.append(f"{b} {q[b].mean():.3f} ± {spread:.3f} | {100 * diff:+.1f} pt | {met}")
                cols = list(range(len(NAMES))) + [ALL.index(e) for e in SETS[sname]]
                top = max((ALL[c] for c in cols), key=lambda n: q[n].mean())
                picked = {}
                for r in rs:
                    for n, c in r["picked"].items():
                        picked[n] = picked.get(n, 0) + c
                out.append(f"| {modality} {name} | {cell(chosen)} | {cells[0]} | {cells[1]} | {top} {q[top].mean():.3f} | "
                           f"{cell([r['agreement'] for r in rs])} / {cell([r['agreement_strict'] for r in rs])} | {cell([r['agreement5'] for r in rs])} | "
                           f"{cell([r['ceiling_agreement'] for r in rs])} / {cell([r['ceiling_strict'] for r in rs])} "
                           f"({', '.join(sorted({r['ceiling_name'] for r in rs}))}) | {sum(r['overrides'] for r in rs)}/{sum(r['tasks'] for r in rs)} | "
                           + ", ".join(f"{n} {c}" for n, c in picked.items() if c) + " |")
    out += ["", "**Optional D: a shift-aware prior** (`shift_aware`; z_shift chosen on val like the rest; chosen accuracy "
            "mean over seeds, overrides of the favourite summed)", ""]
    names = sorted(groups)
    for sname in ("5 candidates (now)", chosen_set):
        cols = list(range(len(NAMES))) + [ALL.index(e) for e in SETS[sname]]
        frozen = [i for i, c in enumerate(cols) if ALL[c] in (*ms.FROZEN, *FROZEN_ENSEMBLES)]
        out += [f"candidate set {sname}:", "", "| z_shift | " + " | ".join(f"{m} {n}" for m, n in names) + " | mean val accuracy |",
                "|---:|" + "---|" * len(names) + "---:|"]
        for zs in (1.0, 1.5, 2.0, 2.5, 3.0, 1e9):
            rs = {k: [summarise(ext[(k[0], sd, k[1])], priors[(k[0], sd)], cols, 0, shift_aware(zs, frozen)) for sd in groups[k]]
                  for k in names}
            mval = np.mean([np.mean([r["chosen"] for r in rs[k]]) for k in names if k[1] == "val"])
            out.append(f"| {zs:g} | " + " | ".join(f"{np.mean([r['chosen'] for r in rs[k]]):.3f} ({sum(r['overrides'] for r in rs[k])})"
                                                   for k in names) + f" | {mval:.4f} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default=str(OUT / "fewshot_selection_tables.npz"))
    args = ap.parse_args()
    ext, priors = load(args.tables)
    print(report(ext, priors))


if __name__ == "__main__":
    main()
