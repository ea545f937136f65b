"""Which agreement of label-free criteria should register a domain-adaptation model (issue 30)? Offline, from
bench/domain_adapt.py's saved results: every features-mode run's choice (source_only vs the method's candidate) is
recomputed with `tlops.training.selection.agreement_choice` under other criteria sets and vote counts, from the scores
and collapse exclusions each run recorded; the registered model's target-test macro-F1 is the run's recorded
`oracle_by_candidate` (never used to choose). First checks that the current rule reproduces every recorded choice.

Run: `python -m bench.da_agreement bench/out/A.json [bench/out/B.json ...]` (bench/RESULTS.md, "Which agreement").
"""
import json
import statistics
import sys

from tlops.training.selection import _better, agreement_choice

C = {"dev": ("dev", "dev_risk", False, 0.0), "im": ("im", "im", True, 0.0), "snd": ("snd", "snd", True, 0.0),
     "source_val": ("source_val", "val_macro_f1", True, 0.05)}
VARIANTS = {"2 of dev,im,snd,sv (now)": (["dev", "im", "snd", "source_val"], 2),
            "3 of dev,im,snd,sv": (["dev", "im", "snd", "source_val"], 3),
            "1 of im,sv": (["im", "source_val"], 1),
            "2 of im,sv": (["im", "source_val"], 2),
            "im only": (["im"], 1), "source_val only": (["source_val"], 1),
            "2 of dev,im,sv": (["dev", "im", "source_val"], 2), "2 of im,snd,sv": (["im", "snd", "source_val"], 2)}

def choose(r, crit, need):
    cands = r["candidates"]
    scores = {c["name"]: {k: v for k, v in c["scores"].items() if k != "votes"} for c in cands}
    excluded = {c["name"]: c["excluded"] for c in cands}
    return agreement_choice(scores, excluded, [C[n] for n in crit], need)[0]

rows = {}
for path in sys.argv[1:]:


    d = json.load(open(path))
    for mod, runs in d["runs"].items():
        for m, bys in runs.items():
            for seed, r in bys.items():
                rows[(mod, m, seed)] = r
# sanity: the current rule reproduces what was registered
bad = [k for k, r in rows.items() if choose(r, *VARIANTS["2 of dev,im,snd,sv (now)"]) != r["chosen"]]
print(f"{len(rows)} runs; current rule reproduces the registered choice in {len(rows) - len(bad)}", bad[:5])
shifts = sorted({k[0] for k in rows})
print("| variant | " + " | ".join(shifts) + " | runs > 3 pts below source_only | adabn >= 3 pts mean gain on | mean gain over source_only, all runs |")
print("|---|" + "---|" * (len(shifts) + 3))
for name, (crit, need) in VARIANTS.items():
    cells, losers, adabn_gain, gains = [], 0, 0, []
    for s in shifts:
        g = []
        for (mod, m, seed), r in rows.items():
            if mod != s:
                continue
            ch = choose(r, crit, need)
            gain = r["oracle_by_candidate"][ch] - r["oracle_by_candidate"]["source_only"]
            g.append(gain); gains.append(gain)
            losers += gain < -0.03
        ad = [r["oracle_by_candidate"][choose(r, crit, need)] - r["oracle_by_candidate"]["source_only"]
              for (mod, m, seed), r in rows.items() if mod == s and m == "adabn"]
        adabn_gain += bool(ad) and statistics.mean(ad) >= 0.03
        cells.append(f"{100 * statistics.mean(g):+.1f}")
    print(f"| {name} | " + " | ".join(cells) + f" | {losers} | {adabn_gain} of {len(shifts)} | {100 * statistics.mean(gains):+.2f} |")
# per criterion: sign agreement with the real gain
print()
for n, (label, key, hi, tol) in C.items():
    right = wrong = 0
    for r in rows.values():
        base = next(c for c in r["candidates"] if c["name"] == "source_only")
        for c in r["candidates"]:
            if c["name"] == "source_only" or c["excluded"]:
                continue
            a, b = c["scores"].get(key), base["scores"].get(key)
            if a is None or b is None:
                continue
            vote = _better(a, b, hi, tol)  # the agreement's own vote (source val: no worse than 5% below)
            gain = r["oracle_by_candidate"][c["name"]] - r["oracle_by_candidate"]["source_only"]
            if gain == 0:
                continue
            right += vote == (gain > 0); wrong += vote != (gain > 0)
    print(f"{n}: vote has the sign of the real gain in {right} of {right + wrong}")
