"""Issue 30's three domain-adaptation checks over every benchmark shift: the six of session 12 (read from their
tables in bench/RESULTS.md, "Domain adaptation on six shifts") plus the shifts of a `bench.domain_adapt` result
(default bench/out/domain_adapt_text.json, the two text shifts of bench.da_shifts), whose tables it prints in the
session-12 format: the run's own registration (the default agreement, 2 of 4 criteria) beside the 3-of-4 choice
recomputed from the same runs' votes (a pure function of each run's candidate scores).

Checks, per method and shift, on target-test macro-F1 means over the seeds:
- (i) an adapted candidate registered and >= 3 points better than source_only (mean of registered - source_only),
  counted per method and for the best method of each shift, against "at least half the shifts";
- (ii) no collapsed model registered: runs whose adapted candidate the guards excluded, and the largest target
  top-class share of a registered adapted candidate (new shifts only; session 12 reported its exclusions in words);
- (iii) never worse on average than source_only beyond its seed spread: registered - source_only >= -std(source_only).

Run: `python -m bench.da_text_shift_checks [bench/out/domain_adapt_text.json]`.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

from bench.common import OUT, REPO

SECTION = "## Domain adaptation on six shifts (issue 30, session 12)"
CELL = re.compile(r"([0-9.]+) ± ([0-9.]+)")


def session12(results: Path = REPO / "bench" / "RESULTS.md") -> dict[str, dict[str, dict]]:
    """{shift: {method: {source_only, adapted, registered3, registered2: (mean, std), counts: str}}} from RESULTS."""
    text = results.read_text(encoding="utf-8")
    start = text.index(SECTION)
    body = text[start:text.index("\n## ", start + len(SECTION))]
    out: dict[str, dict] = {}
    shift = None
    for line in body.splitlines():
        if m := re.fullmatch(r"\*\*([a-z_:]+)\*\*", line.strip()):
            shift = m.group(1)
            out[shift] = {}
        elif shift and line.startswith("| ") and CELL.search(line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            mean_std = [tuple(map(float, CELL.fullmatch(c).groups())) for c in cells[1:5]]
            out[shift][cells[0]] = dict(zip(("source_only", "adapted", "registered3", "registered2"), mean_std, strict=True),
                                        counts=cells[5], gain=float(cells[6].split()[0]))  # the table's own, from unrounded means
    return out


def _ms(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def new_shifts(result: dict) -> tuple[dict[str, dict[str, dict]], dict]:
    """The result's shifts in session12()'s shape, and per shift the (ii) facts."""
    tables, collapse = {}, {}
    for shift, by_method in result["runs"].items():
        tables[shift], excluded, shares = {}, 0, []
        for method, by_seed in by_method.items():
            runs = list(by_seed.values())
            adapted3 = [r["adapted_excluded"] is None and (r["adapted_votes"] or 0) >= 3 for r in runs]
            three = [r["adapted"] if a else r["source_only"] for r, a in zip(runs, adapted3, strict=True)]
            for r in runs:
                if r["chosen"] != "source_only":
                    shares.append(next(c for c in r["candidates"] if c["name"] == r["chosen"])["scores"]["target_top_class_share"])
            excluded += sum(r["adapted_excluded"] is not None for r in runs)
            n = len(runs)
            tables[shift][method] = {
                "source_only": _ms([r["source_only"] for r in runs]), "adapted": _ms([r["adapted"] for r in runs]),
                "registered3": _ms(three), "registered2": _ms([r["registered"] for r in runs]),
                "gain": 100 * statistics.mean(r["registered"] - r["source_only"] for r in runs),
                "counts": f"{sum(adapted3)}/{n} / "
                          f"{sum(r['chosen'] != 'source_only' for r in runs)}/{n} / "
                          f"{sum(r['adapted_excluded'] is not None for r in runs)}/{n}"}
        collapse[shift] = {"excluded": excluded, "max_registered_top_share": max(shares, default=None)}
    return tables, collapse


def table(shift: str, rows: dict[str, dict]) -> str:
    f = "{0:.3f} ± {1:.3f}".format
    header = ("| method | source_only | adapted | registered, 3 of 4 (old default) | registered, 2 of 4 (new default) "
              "| adapted registered 3of4 / 2of4 / excluded | 2 of 4 - source_only |")
    lines = [f"**{shift}**", "", header, "|---|---|---|---|---|---|---|"]
    for m, t in rows.items():
        lines.append(f"| {m} | {f(*t['source_only'])} | {f(*t['adapted'])} | {f(*t['registered3'])} | {f(*t['registered2'])} | "
                     f"{t['counts']} | {t['gain']:+.1f} points |")
    return "\n".join(lines)


def checks(all_shifts: dict[str, dict[str, dict]]) -> str:
    n = len(all_shifts)
    methods = sorted({m for rows in all_shifts.values() for m in rows})
    lines = [f"Checks over {n} shifts (2 of 4, mean of 3 seeds; gain = registered - source_only in points):", "",
             "| method | shifts with gain >= 3 | shifts run | worst gain (shift, source_only std) | worse than the spread |",
             "|---|---|---|---|---|"]
    for m in methods:
        gains = {s: (r[m]["gain"], 100 * r[m]["source_only"][1])
                 for s, r in all_shifts.items() if m in r}
        hits = [s for s, (g, _) in gains.items() if g >= 3]  # the tables' gains are rounded to 0.1: 3.0 counts
        worst = min(gains, key=lambda s: gains[s][0])
        beyond = [s for s, (g, sd) in gains.items() if g < -sd]
        lines.append(f"| {m} | {len(hits)} ({', '.join(hits) or '-'}) | {len(gains)} | {gains[worst][0]:+.1f} ({worst}, "
                     f"{gains[worst][1]:.1f}) | {', '.join(beyond) or 'none'} |")
    best = {s: max(r, key=lambda m: r[m]["gain"]) for s, r in all_shifts.items()}
    won = [s for s, m in best.items() if all_shifts[s][m]["gain"] >= 3]
    lines += ["", f"(i) some method >= 3 points on {len(won)} of {n} shifts: "
              + ", ".join(f"{s} ({best[s]} {all_shifts[s][best[s]]['gain']:+.1f})" for s in all_shifts)]
    return "\n".join(lines)


def main(path: Path) -> str:
    result = json.loads(path.read_text(encoding="utf-8"))
    new, collapse = new_shifts(result)
    parts = [table(s, rows) for s, rows in new.items()]
    parts.append("(ii) per new shift: " + "; ".join(
        f"{s}: {c['excluded']} adapted runs excluded as collapsed, largest target top-class share of a registered adapted "
        f"model {c['max_registered_top_share']}" for s, c in collapse.items()))
    parts.append(checks({**session12(), **new}))
    return "\n\n".join(parts)


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT / "domain_adapt_text.json"))
