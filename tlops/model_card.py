"""A one-page HTML model card for one run: what the model does, the data it learnt from, how it was trained, how
it scored, the promotion gate's decision, and how to use it.

The page is self-contained (inline CSS, plots embedded as base64 `data:` URIs) so it reads the same in MLflow's
artifact viewer, downloaded, or offline. It is built only from the run's typed records (`tlops.records`) plus a
few facts from the config and the run's tags (`CardFacts`); every string from users or data is escaped.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tlops.config import RunConfig
from tlops.data_version import recorded_data_version, short_data_version
from tlops.records import Evaluation, FeatureSet, Gate, Record, TrainResult, ValidationReport
from tlops.task_types import task_type

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TABLE_ROWS = 60  # longer tables (per-epoch history, many checks) show their first rows and say how many were left out
LIST_ITEMS = 40
# Per-class report rows that are summaries, not classes (scikit-learn's `classification_report(output_dict=True)`).
SUMMARY_ROWS = ("accuracy", "macro avg", "weighted avg", "micro avg")
# Train-record fields the card shows in their own sections (or that only the package needs), not under "Training details".
HIDDEN_FIELDS = {"history", "strategy", "val_metrics", "seconds", "execution", "kind", "spec", "labels", "package"}


class CardFacts(Record):
    """What the card says that the step records do not hold: the registered name, lineage and settings."""

    model_name: str
    version: str | None = None
    run_id: str
    experiment: str
    modality: str
    dataset: str
    data_version: str = Field(description="the run's data version (tlops.data_version): the DVC md5 of the data folder")
    rows: dict[str, int]
    git_commit: str
    git_dirty: bool | None = None
    backbone: str
    settings: dict[str, Any] = Field(description="the strategy's and backbone's settings that apply to this run, flat: strategy.C, backbone.pooling")
    seed: int


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _e(v)
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    """A table of escaped cells; rows past TABLE_ROWS are left out and counted."""
    shown = rows[:TABLE_ROWS]
    body = "".join("<tr>" + "".join(f"<td>{_num(c)}</td>" for c in r) + "</tr>" for r in shown)
    more = f'<p class="note">{len(rows) - len(shown)} more rows not shown</p>' if len(rows) > len(shown) else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}'


def _kv(pairs: list[tuple[str, Any]]) -> str:
    """A key/value table; keys are escaped here, values are HTML the caller has escaped."""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _list(items: list[Any]) -> str:
    text = ", ".join(_e(i) for i in items[:LIST_ITEMS])
    return text + (f" … ({len(items) - LIST_ITEMS} more)" if len(items) > LIST_ITEMS else "")


def png_data_uri(path: str | Path) -> str:
    """The PNG at `path` as a `data:` URI (the card must not point at files that are gone after the run)."""
    data = Path(path).read_bytes()
    if not data.startswith(PNG_MAGIC):
        raise ValueError(f"{path} is not a PNG file (the card embeds only the PNG plots the evaluate step writes)")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _img(path: str | Path, alt: str) -> str:
    return f'<figure><img src="{png_data_uri(path)}" alt="{_e(alt)}"><figcaption>{_e(alt)}</figcaption></figure>'


def _title(stem: str) -> str:
    return stem.replace("_", " ").capitalize()


def _value_html(v: Any) -> str:
    """A field's value in a key/value table: scalars as text, lists of scalars joined, small dicts as JSON."""
    if isinstance(v, list) and all(not isinstance(i, (dict, list)) for i in v):
        return _list(v) if v else "—"
    if isinstance(v, (dict, list)):
        return f"<code>{_e(json.dumps(v, default=str))}</code>"
    return "—" if v is None else _num(v)


# Columns of the per-epoch history that count (epochs, steps): shown as whole numbers even when stored as floats
# (`epoch 0.0000` read like a score).
COUNT_COLUMNS = ("epoch", "step", "steps", "episode", "episodes", "iteration", "train_rows")


def _whole(column: str, v: Any) -> Any:
    return int(v) if column in COUNT_COLUMNS and isinstance(v, float) and v.is_integer() else v


def _identity_lines(identity: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A backbone identity flattened to (dotted key, value) pairs: nested mappings become `outer.inner`."""
    if not isinstance(identity, dict):
        return [(prefix or "identity", identity)]
    pairs: list[tuple[str, Any]] = []
    for k, v in identity.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        pairs += _identity_lines(v, key) if isinstance(v, dict) and v else [(key, v)]
    return pairs


def _identity_html(identity: Any) -> str:
    """The backbone identity as one readable `key: value` line per field (it was a raw JSON blob); lists joined."""
    lines = []
    for k, v in _identity_lines(identity):
        text = ", ".join(str(i) for i in v) if isinstance(v, list) else ("—" if v is None or v == {} else str(v))
        lines.append(f"<code>{_e(k)}</code>: {_e(text)}")
    return "<br>".join(lines) or "—"


def _is_row_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, dict) for i in v)


def _record_html(data: dict[str, Any]) -> str:
    """Any record (dumped to JSON types) generically: scalar fields as one key/value table, a list of records as a
    table with their fields as columns, a mapping of such lists as one table per key, a nested record recursively.
    This is how strategy-specific parts (episodic accuracies, a domain adaptation's candidates) reach the card
    without the card knowing each strategy."""
    scalars, blocks = [], []
    for k, v in data.items():
        if k.endswith(("_path", "_dir")):  # scratch files of the run: gone once it ends
            continue
        if _is_row_list(v):
            cols = list(dict.fromkeys(c for row in v for c in row))
            blocks.append(f"<h4>{_e(k)}</h4>" + _table(cols, [[row.get(c, "") for c in cols] for row in v]))
        elif isinstance(v, dict) and v and all(_is_row_list(x) for x in v.values()):
            for name, rows in v.items():
                cols = list(dict.fromkeys(c for row in rows for c in row))
                blocks.append(f"<h4>{_e(k)}: {_e(name)}</h4>" + _table(cols, [[row.get(c, "") for c in cols] for row in rows]))
        elif isinstance(v, dict) and v:
            blocks.append(f"<h4>{_e(k)}</h4>" + _record_html(v))
        else:
            scalars.append((k, _value_html(v)))
    return (_kv(scalars) if scalars else "") + "".join(blocks)


def _doc(record: BaseModel) -> str:
    doc = (type(record).__doc__ or "").strip()
    return f'<p class="note">{_e(" ".join(doc.split()))}</p>' if doc else ""


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _per_class(report: dict[str, Any], labels: list[str]) -> str:
    def row(name: str) -> list[Any]:
        r = report[name]
        support = r.get("support", "")
        return [name, r.get("precision", ""), r.get("recall", ""), r.get("f1-score", ""),
                int(support) if isinstance(support, float) and support.is_integer() else support]  # a count, not a score

    rows = [row(label) for label in labels if isinstance(report.get(label), dict)]
    if not rows:
        return '<p class="note">no per-class report (the evaluation has no per-class rows)</p>'
    summary = [row(name) for name in SUMMARY_ROWS if isinstance(report.get(name), dict)]
    if isinstance(report.get("accuracy"), (int, float)):
        summary.insert(0, ["accuracy", "", "", report["accuracy"], ""])
    worst = min(rows, key=lambda r: r[3])
    note = f'<p class="note">weakest class by F1: <b>{_e(worst[0])}</b> ({_num(worst[3])})</p>'
    return note + _table(["class", "precision", "recall", "F1", "support (test rows)"], rows + summary, "numbers")


def _baseline(base: dict[str, Any] | None, metrics: dict[str, float]) -> str:
    """The classic baseline on the same splits beside the model's test metrics, with a warning when it wins."""
    if not base:
        return ""
    rows = [[k, metrics.get(k, ""), v] for k, v in base["metrics"].items()]
    gm = base["gate_metric"]
    note = (f'<p class="warn">The classic baseline beats this model on {_e(gm)}: the pretrained backbone has not earned its cost '
            "on this data (try fine-tuning, another backbone, or keep the baseline).</p>" if base["wins"] else
            f'<p class="note">The model beats the classic baseline on {_e(gm)}.</p>')
    return (f"<h3>Classic baseline: {_e(base['name'])}</h3>"
            f'<p class="note">Hand-made features of the raw inputs and a linear model on the same splits, its regularisation '
            f"({_num(base['kept'])}) chosen on val (tlops.classic_baseline).</p>"
            + _table(["test metric", "this model", "classic baseline"], rows, "numbers") + note)


def _gate(gate: Gate | None) -> str:
    if gate is None:
        return '<p class="note">pending: this card was written before the model was registered and gated</p>'
    verdict = "promoted to champion" if gate.promoted else "not promoted (champion unchanged)"
    champion = (f"version {_e(gate.champion_version)}: {_num(gate.champion_metric)}"
                + (f" (scored via {_e(gate.champion_scored_via)})" if gate.champion_scored_via else "")
                if gate.champion_version is not None else "none yet")
    return (f'<p class="verdict {"ok" if gate.promoted else "no"}">{_e(verdict)}</p>'
            + _kv([("decision", _e(gate.reason)), ("metric (test split)", _e(gate.metric)),
                   ("challenger (this run, version " + _e(gate.version) + ")", _num(gate.challenger)),
                   ("champion", champion), ("margin", _num(gate.margin))]))


def _selection(train: TrainResult) -> str:
    """The run's label-free choice among candidate models (`selection.json`, tlops.selection_record), when its strategy
    wrote one: domain adaptation (source_only vs adapted) and meta-transfer (meta-learned vs baselines)."""
    from tlops.errors import DataError
    from tlops.selection_record import SelectionRecord, selection_file

    path = selection_file(train)
    if path is None:
        return ""
    try:
        return SelectionRecord.load(path).html()
    except DataError as e:
        return f'<p class="note">the selection record could not be read: {_e(e)}</p>'


def render_model_card(facts: CardFacts, features: FeatureSet, train: TrainResult, evaluation: Evaluation,
                      validation: ValidationReport | None = None, gate: Gate | None = None) -> str:
    """The model card of one run as one HTML page (UTF-8). `gate` None: written before the promotion gate ran."""
    labels = getattr(train, "labels", None) or features.labels  # a few-shot head: its support set's classes
    report = json.loads(Path(evaluation.report_path).read_text(encoding="utf-8"))
    plots = {Path(p).stem: p for p in evaluation.plots}
    ref = f"models:/{facts.model_name}/{facts.version}" if facts.version else f"runs:/{facts.run_id}/model"
    sections = []

    task = features.task
    what = task_type(task).predicts(labels)
    sections.append(_section("task", "What the model does", _kv([
        ("task", f"{_e(facts.modality)} {_e(task)}: predicts {what}"),
        *([("classes", _list(labels))] if labels else []),
        ("input", f"a row of text fields: {_e(', '.join(task_type(task).input_columns))}" if task_type(task).input_columns else
         {"text": "a text string", "image": "an image file path", "audio": "an audio file path"}.get(facts.modality, _e(facts.modality))),
        ("registered as", f"<code>{_e(ref)}</code>"),
    ])))

    checks = validation.checks if validation else []
    passed = sum(c.success for c in checks)
    lineage = _kv([
        ("dataset", f"<code>{_e(facts.dataset)}</code>"),
        ("data version", f"<code>{_e(short_data_version(facts.data_version))}</code>"
                         f' <span class="note">(DVC md5 of the folder: <code>{_e(facts.data_version)}</code>)</span>'),
        ("rows per split", _e(", ".join(f"{k} {v}" for k, v in facts.rows.items()))),
        ("git commit", f"<code>{_e(facts.git_commit)}</code>" + (" (uncommitted changes)" if facts.git_dirty else "")),
        ("validation", f"{passed}/{len(checks)} checks passed" if validation else "no report"),
    ])
    if checks:
        lineage += "<details><summary>validation checks</summary>" + _table(
            ["split", "rule", "passed", "observed"],
            [[c.split, c.rule, "yes" if c.success else "NO", json.dumps(c.observed, default=str)[:120]] for c in checks]) + "</details>"
    sections.append(_section("data", "Data lineage", lineage))

    sections.append(_section("training", "Training", _kv([
        ("strategy", f"<b>{_e(train.strategy)}</b>"),
        ("backbone", f"<code>{_e(facts.backbone)}</code>"),
        ("backbone identity", _identity_html(features.identity)),
        ("settings", _e(", ".join(f"{k}={v}" for k, v in facts.settings.items())) or "—"),
        *([("ran on", _e(f"{train.execution.host}" + (f", work pool {train.execution.work_pool}" if train.execution.work_pool else "")))]
          if train.execution else []),
        ("seed", _num(facts.seed)),
        ("train seconds", f"{train.seconds:.1f}"),
        ("feature seconds", f"{features.seconds:.1f} (cache: {features.cache.hits} hits, {features.cache.misses} misses)"),
    ])))

    metrics = [[k, v] for k, v in evaluation.metrics.items()]
    val = train.val_metrics  # as the task type names them (macro_f1; mae, rmse, r2, spearman)
    sections.append(_section("metrics", "Metrics", _table(["test metric", f"value ({evaluation.n_test} test rows)"], metrics, "numbers")
                             + _table(["validation metric (the model was selected on these)", "value"], list(val.items()), "numbers")
                             + _baseline(evaluation.baseline, evaluation.metrics)))
    own = getattr(task_type(task), "card_results", lambda report: None)(report)  # a task type's own table (detection: AP per category)
    if own:
        shown = [_img(plots.pop(stem), _title(stem)) for stem in own.get("pictures", []) if stem in plots]
        sections.append(_section("per-class", own["title"], f'<p class="note">{_e(own["note"])}</p>'
                                 + _table(own["header"], own["rows"], "numbers") + "".join(shown)))
    else:
        sections.append(_section("per-class", "Per-class results (test)", _per_class(report, labels)))

    cm = plots.pop("confusion_matrix", None)
    sections.append(_section("confusion", "Confusion matrix (test)",
                             _img(cm, "confusion matrix (test)") if cm else '<p class="note">no confusion matrix was drawn</p>'))

    curves = plots.pop("learning_curves", None)
    history = train.history
    cols = list(dict.fromkeys(c for row in history for c in row))
    body = (_img(curves, "learning curves") if curves else
            f'<p class="note">no curve was drawn ({len(history)} history row(s))</p>')
    if history:
        rows = [[_whole(c, r.get(c, "")) for c in cols] for r in history]
        body += "<details><summary>per-epoch history</summary>" + _table(cols, rows, "numbers") + "</details>"
    sections.append(_section("curves", "Learning curves", body))

    # Strategy-specific parts of the train record (loop summary, episodic accuracies, domain adaptation, ...), generically.
    extras = [(name, value) for name, value in train if isinstance(value, BaseModel) and name not in HIDDEN_FIELDS]
    if extras or plots:
        body = "".join(f"<h3>{_e(_title(name))}</h3>{_doc(value)}{_record_html(value.model_dump(mode='json'))}" for name, value in extras)
        body += "".join(_img(p, _title(stem)) for stem, p in plots.items())
        sections.append(_section("details", "Training details", body))

    selection = _selection(train)
    if selection:
        sections.append(_section("selection", "Selection", selection))

    sections.append(_section("gate", "Promotion gate", _gate(gate)))
    usage = [u.format(ref=ref) for u in own["usage"]] if own and own.get("usage") else [
        f'tlops predict {ref} "an input" --proba', f"tlops predict {ref} --csv new_rows.csv --json"]
    sections.append(_section("use", "How to use it", (
        "<pre>" + "".join(f"{_e(u)}\n" for u in usage) + f"tlops evaluate {_e(ref)} --data labelled_folder/</pre>"
        f'<p class="note">MLflow run <code>{_e(facts.run_id)}</code> in experiment <code>{_e(facts.experiment)}</code>; '
        "the model is also an MLflow pyfunc (<code>mlflow.pyfunc.load_model</code>) taking a column of strings.</p>")))

    headline = evaluation.metrics.get(gate.metric if gate else "macro_f1")
    title = f"{facts.model_name}" + (f" v{facts.version}" if facts.version else "")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    toc = " · ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in [("task", "task"), ("data", "data"), ("training", "training"),
                                                                  ("metrics", "metrics"), ("per-class", "per class"), ("confusion", "confusion"),
                                                                  ("curves", "curves")] + ([("selection", "selection")] if selection else [])
                                                          + [("gate", "gate"), ("use", "use")])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Model card: {_e(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>Model card: {_e(title)}</h1>"
            f'<p class="sub">{_e(train.strategy)} on <code>{_e(facts.backbone)}</code> · '
            f"{_e(facts.modality)} · {_e(what)}"
            + (f" · test {_e(gate.metric if gate else 'macro_f1')} <b>{_num(headline)}</b>" if headline is not None else "")
            + f" · written {when}</p><nav>{toc}</nav></header>{''.join(sections)}</body></html>")


def write_model_card(path: Path, *args: Any, **kwargs: Any) -> Path:
    """`render_model_card(...)` written to `path` (written whole, then renamed: never half a card)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_model_card(*args, **kwargs), encoding="utf-8")
    tmp.replace(path)
    return path


CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;max-width:1100px;margin:0 auto;padding:0 24px 48px;color:#1d2430;background:#fff;line-height:1.45}
header{border-bottom:2px solid #2f6fb0;margin-bottom:8px}h1{margin:18px 0 4px;font-size:26px}.sub{margin:0 0 6px;color:#444}
nav{margin:6px 0 10px;font-size:13px}nav a{color:#2f6fb0}
h2{font-size:19px;margin:26px 0 8px;border-bottom:1px solid #dde3ea;padding-bottom:3px}h3{font-size:16px;margin:18px 0 6px}h4{font-size:14px;margin:12px 0 4px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}th,td{border:1px solid #d5dbe3;padding:3px 8px;text-align:left;vertical-align:top}
thead th{background:#eef3f8}table.kv th{background:#f6f8fa;font-weight:600;white-space:nowrap}
table.numbers td{text-align:right;font-variant-numeric:tabular-nums}table.numbers td:first-child{text-align:left}tr.chosen td{font-weight:700;background:#eef8f0}
code,pre{font-family:"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-all}pre{background:#f6f8fa;padding:10px;border:1px solid #dde3ea;white-space:pre-wrap}
figure{margin:8px 0}figure img{max-width:100%;border:1px solid #dde3ea}figcaption{font-size:12px;color:#555}
.note{color:#555;font-size:13px}.warn{color:#b35900;font-weight:700}.verdict{font-weight:700;font-size:15px}.verdict.ok{color:#1a7f37}.verdict.no{color:#b35900}
details{margin:6px 0}summary{cursor:pointer;color:#2f6fb0;font-size:13px}
"""


def card_facts(cfg: RunConfig, *, run_id: str, modality: str, task: str, rows: dict[str, int], tags: dict[str, str],
               version: str | None = None) -> CardFacts:
    """The card's facts from the run's config, its split sizes and the lineage tags recorded when it started
    (the data version's tags, `git.commit`, `git.dirty`). Settings: only those that apply, as in the run's params."""
    from tlops.run_params import applicable_params
    from tlops.strategies import get_strategy

    params = applicable_params(cfg.model_dump(mode="json"), modality, uses_unlabeled="unlabeled" in get_strategy(cfg.strategy.name).splits,
                               task=task)
    settings = {k: v for k, v in params.items() if k.startswith(("strategy.", "backbone.")) and k not in ("strategy.name", "backbone.name")}
    return CardFacts(model_name=cfg.registry.model_name, version=version, run_id=run_id, experiment=cfg.tracking.experiment,
                     modality=modality, dataset=cfg.data.path, data_version=recorded_data_version(tags) or "unknown", rows=rows,
                     git_commit=tags.get("git.commit", "none"), git_dirty=tags.get("git.dirty") == "True" if "git.dirty" in tags else None,
                     backbone=cfg.backbone.name, settings=settings, seed=cfg.seed)
