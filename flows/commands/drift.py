"""`tlops drift MODEL_URI --data NEW_INPUTS.csv`: have the inputs a registered model now sees moved away from its
training data? No labels needed: the new inputs and the model's training split are embedded by the model's own backbone
(through the feature cache: the training features a run cached are hits), compared by an MMD permutation test and a
domain-classifier AUC (`tlops.drift`), with the model's predicted-class mix and confidence on each; the verdict, its
numbers and the new rows that look most out of distribution are printed and logged as an MLflow run tagged with the
model version."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.commands._common import JSON, TRACKING
from flows.console import esc, out, print_json, quiet_third_party, user_errors

VERDICT_STYLE = {"drift": "bold red", "possible drift": "yellow", "no drift": "green"}


def drift(model_uri: str = typer.Argument(..., help="models:/NAME@champion or models:/NAME/VERSION"),
          data: Path = typer.Option(..., "--data", help="the new inputs: a CSV with a 'text' or 'path' column (no labels needed)"),
          reference: str = typer.Option("train", "--reference", help="the split of the model's training data to compare with"),
          alpha: float = typer.Option(0.01, "--alpha", min=1e-6, max=0.5, help="the MMD test's significance level"),
          auc: float = typer.Option(0.75, "--auc", min=0.5, max=1.0, help="a domain-classifier AUC this high calls the shift sizeable"),
          permutations: int = typer.Option(500, "--permutations", min=20, help="permutations of the MMD test"),
          cache_dir: Path = typer.Option(Path(".tlops/cache"), "--cache-dir", help="the feature cache (a run's features.cache_dir)"),
          log: bool = typer.Option(True, "--log/--no-log", help="log the check as an MLflow run tagged with the model version"),
          json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Check new inputs for drift from a model's training data, in the model's own feature space."""
    from flows.drift import check, log_run

    quiet_third_party()
    result, x_ref, x_new = check(model_uri, data, tracking_uri, reference=reference, alpha=alpha, auc=auc,
                                 permutations=permutations, cache_dir=cache_dir)
    if log:
        result["run_id"] = log_run(result, x_ref, x_new)
    if json_out:
        return print_json(result)
    _print(result)


def _print(r: dict) -> None:
    style = VERDICT_STYLE[r["verdict"]]
    out.print(f"[{style}]{r['verdict']}[/{style}]  {esc(r['model_uri'])}: {r['new_rows']} new inputs ({esc(r['data'])}) vs "
              f"{r['reference_rows']} of {esc(r['reference'])}")
    for reason in r["reasons"]:
        out.print(f"  {esc(reason)}")
    s = r["prediction_shift"]
    if s.get("kind") == "classes":
        out.print(f"  predicted classes: total variation {s['total_variation']:.3f}; mean confidence "
                  f"{s['reference_confidence']:.3f} -> {s['new_confidence']:.3f}")
    elif s:
        out.print(f"  predictions: mean {s['reference_mean']:.4g} -> {s['new_mean']:.4g}, std {s['reference_std']:.4g} -> "
                  f"{s['new_std']:.4g}")
    if r["most_out_of_distribution"]:
        t = Table("row", "distance (x typical)", "input", title="new inputs farthest from the training data")
        for o in r["most_out_of_distribution"][:5]:
            t.add_row(str(o["row"] + 1), f"{o['score']:.2f}", esc(str(o["input"])[:70]))
        out.print(t)
    if r.get("run_id"):
        out.print(f"logged as MLflow run {r['run_id']} (tag tlops.drift.model={esc(r['model'])}/{r['version']})")


def register(app: typer.Typer) -> None:
    app.command("drift")(user_errors(drift))
