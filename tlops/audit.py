"""The audit's verdict: is a re-run the same model as the registered one, with evidence and stated tolerances.

Pure comparison and reporting; fetching from MLflow, checking out code and re-running live in
`tasks/audit.py` and `tlops/reproduce.py`.

What can be guaranteed, and is therefore required:
- a head on frozen features (`linear_probe` and other head-only strategies) on the CPU is deterministic:
  identical predictions and test metrics, weights equal to float rounding (1e-6);
- a trained backbone (`finetune`) is deterministic on one machine type (bench/RESULTS.md: reruns
  bit-identical), but a different CPU picks different convolution/matmul kernels, and on small data the
  last-digit differences can change which epoch wins. Required: >= 95% prediction agreement and the test
  metric within 0.02; the weight difference is measured and reported, not bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from tlops.strategies.registry import all_strategies



class Tolerances(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_agreement: float
    max_metric_diff: float
    max_weight_diff: float | None  # None: measured and reported, not bounded


def tolerances_for(strategy: str) -> Tolerances:
    entry = all_strategies().get(strategy)
    if entry is not None and entry.head_only:  # a head on the frozen backbone: a rerun must give the same weights
        return Tolerances(min_agreement=1.0, max_metric_diff=1e-9, max_weight_diff=1e-6)
    return Tolerances(min_agreement=0.95, max_metric_diff=0.02, max_weight_diff=None)


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    passed: bool | None  # None: not run (an earlier check failed)
    detail: str
    evidence: dict[str, Any] = {}


class AuditReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    version: str
    run_id: str
    strategy: str
    passed: bool
    checks: list[Check]
    tolerances: Tolerances
    recorded_metrics: dict[str, float] = {}
    reproduced_metrics: dict[str, float] = {}
    agreement: float | None = None
    max_weight_diff: dict[str, float] = {}
    bit_identical: bool | None = None
    wall_s: float = 0.0
    original_wall_s: float | None = None
    audited_at: str = ""

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]


def max_weight_diff(registered: Path, reproduced: Path) -> dict[str, float]:
    """Max |a - b| over the tensors of every safetensors file both packages hold (head, backbone weights)."""
    from safetensors.numpy import load_file

    out = {}
    for f in sorted(registered.rglob("*.safetensors")):
        rel = f.relative_to(registered)
        other = reproduced / rel
        if not other.is_file():
            out[rel.as_posix()] = float("inf")
            continue
        a, b = load_file(str(f)), load_file(str(other))
        if a.keys() != b.keys():
            out[rel.as_posix()] = float("inf")
            continue
        out[rel.as_posix()] = max((float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()) if a[k].size else 0.0
                                   for k in a), default=0.0)
    return out


def compare(registered: Path, reproduced: Path, inputs: list[str], recorded: dict[str, float], reproduced_metrics: dict[str, float],
            tol: Tolerances) -> tuple[Check, dict]:
    """Predictions of both packages on the test inputs, their metrics and weights, against the tolerances."""
    from tlops.package import Predictor

    a, b = Predictor(registered).predict(inputs), Predictor(reproduced).predict(inputs)
    agreement = float(np.mean([x == y for x, y in zip(a, b)])) if inputs else 1.0
    diffs = max_weight_diff(registered, reproduced)
    metric_diff = max((abs(recorded[k] - reproduced_metrics[k]) for k in recorded if k in reproduced_metrics), default=float("inf"))
    worst_w = max(diffs.values(), default=0.0)
    problems = []
    if agreement < tol.min_agreement:
        problems.append(f"prediction agreement {agreement:.4f} < {tol.min_agreement}")
    if metric_diff > tol.max_metric_diff:
        problems.append(f"test metric differs by {metric_diff:.6f} > {tol.max_metric_diff}")
    if tol.max_weight_diff is not None and worst_w > tol.max_weight_diff:
        problems.append(f"weights differ by up to {worst_w:.3g} > {tol.max_weight_diff}")
    detail = ("; ".join(problems) if problems else
              f"{agreement:.2%} of {len(inputs)} test predictions agree, test metrics within {metric_diff:.2g}, weights within {worst_w:.3g}")
    evidence = {"agreement": agreement, "n_test": len(inputs), "metric_diff": metric_diff, "max_weight_diff": diffs,
                "disagreeing_rows": [i for i, (x, y) in enumerate(zip(a, b)) if x != y][:50]}
    return Check(name="same model", passed=not problems, detail=detail, evidence=evidence), \
        {"agreement": agreement, "max_weight_diff": diffs, "bit_identical": worst_w == 0.0 and agreement == 1.0}


def to_markdown(r: AuditReport) -> str:
    lines = [f"# Audit of {r.model} v{r.version}: {'PASSED' if r.passed else 'FAILED'}", "",
             f"- run `{r.run_id}`, strategy `{r.strategy}`, audited {r.audited_at}",
             f"- audit wall time {r.wall_s:.1f} s" + (f" (original run {r.original_wall_s:.1f} s, ratio {r.wall_s / r.original_wall_s:.2f})"
                                                     if r.original_wall_s else ""),
             f"- tolerances: agreement >= {r.tolerances.min_agreement}, |test metric diff| <= {r.tolerances.max_metric_diff}, "
             f"max |weight diff| {'<= ' + str(r.tolerances.max_weight_diff) if r.tolerances.max_weight_diff is not None else 'reported'}",
             "", "| check | result | detail |", "|---|---|---|"]
    for c in r.checks:
        result = {True: "pass", False: "**FAIL**", None: "not run"}[c.passed]
        lines.append(f"| {c.name} | {result} | {c.detail.replace('|', '/')} |")
    if r.recorded_metrics:
        lines += ["", "| test metric | recorded | reproduced |", "|---|---|---|"]
        lines += [f"| {k} | {v:.6f} | {r.reproduced_metrics.get(k, float('nan')):.6f} |" for k, v in r.recorded_metrics.items()]
    if r.max_weight_diff:
        lines += ["", "| weights file | max abs diff |", "|---|---|"] + [f"| {k} | {v:.3g} |" for k, v in r.max_weight_diff.items()]
    return "\n".join(lines) + "\n"
