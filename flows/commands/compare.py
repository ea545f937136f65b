"""`tlops compare RUN_OR_MODEL...`: runs or registered versions side by side, from what their runs logged (no
retraining): strategy, backbone, data version, the settings that differ between them, test and validation metrics,
seconds; with `--html PATH`, a self-contained page with their metrics as bars, their learning curves overlaid, and
each run's own logged plots (learning curves, confusion matrix, a regression's predicted-vs-true...) side by side,
as Ludwig's `visualize compare_performance` does.

Arguments: an MLflow run id (or the first 8+ characters of one, as `tlops models NAME` shows it), `runs:/ID`,
`models:/NAME/VERSION`, `models:/NAME@ALIAS`, or `NAME` (or `models:/NAME`): every version of that model. What is shown
is what each run logged, whatever its task type: a run without a confusion matrix (regression, token classification)
shows the plots and metrics it has. Every user-written string (names, params, paths) is escaped in the table and in
the page. No page is written unless `--html PATH` is given (a read-only command leaves no files behind)."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.commands._common import JSON, TRACKING
from flows.console import esc, out, print_json, quiet_third_party, status, user_errors
from tlops.data_version import recorded_data_version, short_data_version

RUN_ID = re.compile(r"[0-9a-f]{8,32}")  # MLflow run ids are 32 hex digits; tables show their first 12
# not shown among the settings that differ (--json has every param): the run's name (its own row), where files are
# kept (not what was trained), and the backbone's identity, derived from backbone.name (its row) and its weights
HIDDEN_PARAMS = {"tracking.run_name", "execution.work_dir", "features.cache_dir", "data.dvc_cache"}
HIDDEN_PREFIXES = ("backbone.identity.",)
SETTING_CHARS = 48  # a long setting (a path, a JSON list) in the table; JSON and the page have it whole
PLOTS = "plots"  # the run's logged plots (tasks/evaluate.py): learning_curves.png, confusion_matrix.png, ...
PLOT_ORDER = ("learning_curves.png", "confusion_matrix.png")  # first, in this order; the others by name


# ---- what each argument names ----------------------------------------------------------------------------------

def _runs_of(reg, ref: str, names: list[str]) -> list[dict]:
    """The runs `ref` names, each {"ref", "run_id", "model", "version", "aliases"}; a RegistryError naming `ref` and
    the fix when it names nothing."""
    from tlops.errors import RegistryError

    def version_row(mv) -> dict:
        return {"ref": ref, "run_id": mv.run_id, "model": mv.name, "version": str(mv.version), "aliases": sorted(mv.aliases)}

    if ref.startswith("models:/"):
        rest = ref.removeprefix("models:/")
        if rest and "/" not in rest and "@" not in rest:  # models:/NAME: every version
            return [version_row(mv) for mv in reg.versions(rest)]
        return [version_row(reg.resolve_uri(ref))]
    if ref.startswith("runs:/"):
        run_id = ref.removeprefix("runs:/").split("/", 1)[0]
        return [_run_row(reg, ref, run_id, names)]
    if ref in names:
        return [version_row(mv) for mv in reg.versions(ref)]
    if RUN_ID.fullmatch(ref):
        return [_run_row(reg, ref, ref, names)]
    raise RegistryError(_unknown(ref, names))


def _unknown(ref: str, names: list[str]) -> str:
    return (f"unknown run or model {ref!r}: neither a registered model (registered: {', '.join(names) or '(none)'}; see `tlops models`) "
            "nor a run id of this store (the run column of `tlops models NAME`, or MLflow's UI); pass a run id, NAME, "
            "models:/NAME/VERSION or models:/NAME@ALIAS, and --tracking-uri for another store")


def _run_row(reg, ref: str, run_id: str, names: list[str]) -> dict:
    """A run by its id, or by the first 8+ characters of it (unique in this store)."""
    from mlflow.exceptions import MlflowException

    from tlops.errors import RegistryError

    if len(run_id) == 32:
        try:
            reg.client.get_run(run_id)
            return {"ref": ref, "run_id": run_id, "model": None, "version": None, "aliases": []}
        except MlflowException:
            raise RegistryError(_unknown(ref, names)) from None
    found = _runs_starting(reg.client, run_id) if RUN_ID.fullmatch(run_id) else []
    if len(found) > 1:
        raise RegistryError(f"run id prefix {ref!r} matches {len(found)} runs ({', '.join(sorted(found)[:5])}...); give more of the id")
    if not found:
        raise RegistryError(_unknown(ref, names))
    return {"ref": ref, "run_id": found[0], "model": None, "version": None, "aliases": []}


def _runs_starting(client, prefix: str) -> list[str]:
    """Ids of the store's runs (any experiment, active or deleted) that start with `prefix`."""
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    found, token = [], None
    for i in range(0, len(experiments), 100):  # MLflow searches up to 100 experiments per call
        while True:
            page = client.search_runs(experiments[i:i + 100], run_view_type=ViewType.ALL, max_results=1000, page_token=token)
            found += [r.info.run_id for r in page if r.info.run_id.startswith(prefix)]
            token = page.token
            if not token:
                break
    return found


def check_fast(tracking_uri: str | None, refs: list[str]) -> None:
    """An unknown model, version, alias or run said in about a second on the default SQLite store, read directly
    (`flows.commands._registry_read`), before the seconds of MLflow's import: the same error lines as the MLflow
    path below. Anything this reader cannot answer (another store, an odd name, a prefix of several runs) is left
    to that path."""
    from flows.commands._registry_read import Fallback, SqliteReader, require_store

    uri = require_store(tracking_uri)  # a SQLite file that does not exist: refused, not created empty
    try:
        reader = SqliteReader(uri)
    except Fallback:
        return
    try:
        names = reader.model_names()
        for ref in refs:
            _check_one(reader, ref, names)
    except Fallback:
        return
    finally:
        reader.close()


def _check_one(reader, ref: str, names: list[str]) -> None:
    from flows.commands._registry_read import Fallback, split_model_uri
    from tlops.errors import RegistryError

    if ref.startswith("models:/"):
        name, at, part = split_model_uri(ref)
        if not name or part == "":
            raise Fallback(ref)  # MLflow's path says what is wrong with it
        reader.require_model(name)
        if part is None:
            return
        if at or not part.isdigit():  # models:/NAME@ALIAS (or models:/NAME/ALIAS, as Registry.resolve reads it)
            aliases = reader.alias_names(name)
            if part.lstrip("@") not in aliases:
                raise RegistryError(f"model {name!r} has no alias {part.lstrip('@')!r}; its aliases: {', '.join(aliases) or '(none)'}")
            return
        versions = reader.version_numbers(name)
        if part not in versions:
            raise RegistryError(f"model {name!r} has no version {part!r}; its versions: {', '.join(versions) or '(none)'}")
        return
    if ref in names:
        return
    run_id = ref.removeprefix("runs:/").split("/", 1)[0] if ref.startswith("runs:/") else ref
    if not RUN_ID.fullmatch(run_id) or (ref.startswith("runs:/") and len(run_id) != 32):
        if ref.startswith("runs:/"):
            raise Fallback(ref)
        raise RegistryError(_unknown(ref, names))
    if not reader.has_run(run_id):
        raise RegistryError(_unknown(ref, names))


# ---- what each run logged ----------------------------------------------------------------------------------------



def _read_run(client, row: dict) -> dict:
    from mlflow.exceptions import MlflowException

    from tlops.errors import RegistryError

    try:
        run = client.get_run(row["run_id"])
    except MlflowException as e:  # a version whose run was deleted from the store
        raise RegistryError(f"{row['ref']!r}: its run {row['run_id']} cannot be read ({e.error_code}); compare the other runs, "
                            "or restore it (`mlflow gc` has not removed it yet: `mlflow runs restore --run-id ID`)") from None
    info, p, t, m = run.info, run.data.params, run.data.tags, run.data.metrics
    seconds = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None
    curves = {}
    for key in sorted(m):  # a curve: any metric logged at more than one step (per epoch, per training-set size)
        history = client.get_metric_history(row["run_id"], key)
        if len(history) > 1:
            curves[key] = sorted((h.step, h.value) for h in history)
    try:
        plots = sorted(Path(a.path).name for a in client.list_artifacts(row["run_id"], PLOTS) if a.path.endswith(".png"))
    except Exception:
        plots = []
    return {**row, "run_name": t.get("mlflow.runName"), "experiment_id": info.experiment_id, "status": info.status,
            "strategy": t.get("tlops.strategy") or p.get("strategy.name"), "backbone": p.get("backbone.name"),
            "registry_metric": p.get("registry.metric"), "data_version": recorded_data_version(t), "data_path": p.get("data.path"),
            "git_commit": t.get("git.commit"), "started_ms": info.start_time, "seconds": seconds, "params": dict(p),
            "metrics": dict(m), "curves": curves, "plots": plots, "error": t.get("tlops.error")}


def _differing(runs: list[dict]) -> list[str]:
    """The settings (params) whose values are not the same in every run (one a run does not have counts as different)."""
    keys = sorted(k for k in set().union(*(r["params"] for r in runs)) - HIDDEN_PARAMS if not k.startswith(HIDDEN_PREFIXES))
    return [k for k in keys if len({r["params"].get(k) for r in runs}) > 1] if len(runs) > 1 else []


def _shown_metrics(runs: list[dict]) -> list[str]:
    """Test metrics, then the validation metrics the training logged (last value), then seconds; each once, in the
    order they were first met."""
    keys = sorted(set().union(*(r["metrics"] for r in runs)))
    test = [k for k in keys if k.startswith("test_")]
    val = [k for k in keys if k.startswith("train_val_") or (k.startswith("val_") and k not in _curve_only(runs))]
    secs = [k for k in keys if k.endswith("_seconds")]
    return test + val + secs


def _curve_only(runs: list[dict]) -> set[str]:
    return {k for r in runs for k in r["curves"] if k.endswith("_by_train_rows")}


def _better(metric: str) -> bool | None:
    """Whether higher is better for a test metric a gate knows (test_macro_f1, test_mae), else None (not marked)."""
    from tlops.errors import ConfigError
    from tlops.task_types import higher_is_better

    try:
        return higher_is_better(metric.removeprefix("test_"))
    except ConfigError:
        return None


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _label(r: dict) -> str:
    if r["model"]:
        return f"{r['model']} v{r['version']}" + (f" ({', '.join(r['aliases'])})" if r["aliases"] else "")
    return f"run {r['run_id'][:12]}"


def _cut(s: str | None, n: int = SETTING_CHARS) -> str:
    """A long value's start and end (paths differ at their end: .../tilt-data, .../rate-data)."""
    s = "-" if s is None else str(s)
    return s if len(s) <= n else s[: n // 2 - 1] + "…" + s[-(n - n // 2):]


def _table(runs: list[dict], differing: list[str], metrics: list[str]) -> Table:
    t = Table("", *(esc(_label(r)) for r in runs), title="compare", title_justify="left")
    t.add_row("run", *(r["run_id"][:12] for r in runs))
    t.add_row("run name", *(esc(r["run_name"] or "-") for r in runs))
    t.add_row("status", *(r["status"] if r["status"] == "FINISHED" else f"[red]{r['status']}[/red]" for r in runs))
    t.add_row("strategy", *(esc(r["strategy"] or "-") for r in runs))
    t.add_row("backbone", *(esc(_cut(r["backbone"])) for r in runs))
    t.add_row("data version", *(esc(short_data_version(r["data_version"])) for r in runs), end_section=True)
    for k in differing:
        t.add_row(esc(k), *(esc(_cut(r["params"].get(k))) for r in runs))
    if differing:
        t.rows[-1].end_section = True
    for k in metrics:
        values = [r["metrics"].get(k) for r in runs]
        best = None
        higher = _better(k) if k.startswith("test_") and len(runs) > 1 else None
        finite = [v for v in values if v is not None and not math.isnan(v)]
        if higher is not None and finite and len(set(finite)) > 1:
            best = max(finite) if higher else min(finite)
        show = _secs if k.endswith("_seconds") else _fmt
        t.add_row(esc(k), *(f"[bold green]{show(v)}[/bold green]" if v is not None and v == best else show(v) for v in values))
    t.add_row("seconds (run)", *(_secs(r["seconds"]) for r in runs))
    return t


# ---- the page ----------------------------------------------------------------------------------------------------

def _png_uri(data: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_png(draw) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _metric_bars(runs: list[dict], keys: list[str]) -> bytes | None:
    """One panel per test metric, one bar per run (Ludwig's compare_performance)."""
    keys = [k for k in keys if k.startswith("test_") and any(isinstance(r["metrics"].get(k), float) for r in runs)]
    if not keys:
        return None
    labels = [_label(r) for r in runs]

    def draw(plt):
        cols = min(4, len(keys))
        rows = math.ceil(len(keys) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(max(4, 1.1 * len(runs) + 1.5) * cols, 3.2 * rows), squeeze=False)
        for ax, k in zip(axes.flat, keys):
            values = [r["metrics"].get(k, float("nan")) for r in runs]
            ax.bar(range(len(runs)), values, color=[f"C{i % 10}" for i in range(len(runs))])
            ax.set_xticks(range(len(runs)), labels, rotation=30, ha="right", fontsize=8)
            ax.set_title(k)
            ax.margins(y=0.15)  # room for the values above the bars
            for i, v in enumerate(values):
                if not math.isnan(v):
                    ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
        for ax in list(axes.flat)[len(keys):]:
            ax.set_visible(False)
        return fig

    return _figure_png(draw)


def _overlaid_curves(runs: list[dict]) -> bytes | None:
    """One panel per curve metric (per epoch, or by training rows), one line per run that logged it."""
    keys = sorted(set().union(*(r["curves"] for r in runs)))
    if not keys:
        return None

    def draw(plt):
        from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

        cols = min(3, len(keys))
        rows = math.ceil(len(keys) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
        for ax, k in zip(axes.flat, keys):
            for i, r in enumerate(runs):
                if k in r["curves"]:
                    steps, values = zip(*r["curves"][k])
                    ax.plot(steps, values, marker="o", color=f"C{i % 10}", label=_label(r))
            if k.endswith("_by_train_rows"):
                ax.set_xscale("log")
                ax.set_xticks(sorted({s for r in runs for s, _ in r["curves"].get(k, [])}))  # the sizes trained on
                ax.xaxis.set_major_formatter(ScalarFormatter())  # 6, 12, 21, 42: not 2x10^1
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_xlabel("training rows (log scale)")
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
                ax.set_xlabel("epoch (step)")
            ax.set_title(k)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(keys):]:
            ax.set_visible(False)
        return fig

    return _figure_png(draw)


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top;font-size:.9em}th{background:#f4f4f4}
td.best{font-weight:bold;color:#176117}img{max-width:100%}table.plots{table-layout:fixed;width:100%}table.plots tr:first-child th:first-child{width:9em}code{font-size:.85em}.none{color:#888}"""


def _page(runs: list[dict], differing: list[str], metrics: list[str], logged: dict[tuple[str, str], bytes]) -> str:
    e = lambda x: html.escape("-" if x is None else str(x), quote=True)
    head = "".join(f"<th>{e(_label(r))}</th>" for r in runs)

    def row(name: str, cells: list[str]) -> str:
        return f"<tr><th>{e(name)}</th>{''.join(cells)}</tr>"

    rows = [row("run", [f"<td><code>{e(r['run_id'])}</code></td>" for r in runs]),
            row("run name", [f"<td>{e(r['run_name'])}</td>" for r in runs]),
            row("status", [f"<td>{e(r['status'])}</td>" for r in runs]),
            row("strategy", [f"<td>{e(r['strategy'])}</td>" for r in runs]),
            row("backbone", [f"<td>{e(r['backbone'])}</td>" for r in runs]),
            row("data version", [f"<td><code>{e(r['data_version'])}</code></td>" for r in runs]),
            row("data path", [f"<td><code>{e(r['data_path'])}</code></td>" for r in runs])]
    rows += [row(k, [f"<td>{e(r['params'].get(k))}</td>" for r in runs]) for k in differing]
    for k in metrics:
        values = [r["metrics"].get(k) for r in runs]
        higher = _better(k) if k.startswith("test_") and len(runs) > 1 else None
        finite = [v for v in values if v is not None and not math.isnan(v)]
        best = (max(finite) if higher else min(finite)) if higher is not None and len(set(finite)) > 1 else None
        show = _secs if k.endswith("_seconds") else _fmt
        rows.append(row(k, [f"<td class='best'>{show(v)}</td>" if v is not None and v == best else f"<td>{show(v)}</td>" for v in values]))
    rows.append(row("seconds (run)", [f"<td>{_secs(r['seconds'])}</td>" for r in runs]))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>tlops compare</title><style>{CSS}</style></head><body>",
             "<h1>tlops compare</h1>", f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>",
             "<p>Settings shown: those that differ between the runs" + ("" if differing else " (none differ)") + "; where files are "
             "kept and the backbone's derived identity are left out (<code>tlops compare --json</code> has every param).</p>"]
    bars = _metric_bars(runs, metrics)
    if bars:
        parts.append(f"<h2>Test metrics</h2><img src='{_png_uri(bars)}' alt='test metrics per run'>")
    curves = _overlaid_curves(runs)
    if curves:
        parts.append(f"<h2>Learning curves, overlaid</h2><img src='{_png_uri(curves)}' alt='learning curves of every run'>")
    names = sorted({n for r in runs for n in r["plots"]}, key=lambda n: (PLOT_ORDER.index(n) if n in PLOT_ORDER else len(PLOT_ORDER), n))
    if names:
        parts.append(f"<h2>Each run's plots</h2><table class='plots'><tr><th></th>{head}</tr>")
        for n in names:
            cells = []
            for r in runs:
                data = logged.get((r["run_id"], n))
                cells.append(f"<td><img src='{_png_uri(data)}' alt='{e(n)} of {e(_label(r))}'></td>" if data
                             else "<td class='none'>not logged by this run</td>")
            parts.append(row(n.removesuffix(".png").replace("_", " "), cells))
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _logged_plots(client, runs: list[dict]) -> dict[tuple[str, str], bytes]:
    import tempfile

    logged = {}
    with tempfile.TemporaryDirectory(prefix="tlops-compare-") as tmp:
        for i, r in enumerate(runs):
            for n in r["plots"]:
                path = client.download_artifacts(r["run_id"], f"{PLOTS}/{n}", str(Path(tmp) / str(i)))
                logged[(r["run_id"], n)] = Path(path).read_bytes()
    return logged


def _html_path(path: Path) -> Path:
    return path / "compare.html" if path.is_dir() else path


# ---- the command -------------------------------------------------------------------------------------------------

def compare(refs: list[str] = typer.Argument(..., help="run ids, NAME (every version), models:/NAME/VERSION or models:/NAME@ALIAS",
                                             metavar="RUN_OR_MODEL"),
            html_path: Optional[Path] = typer.Option(None, "--html", help="also write a page with the runs' metrics, learning curves "
                                                     "and logged plots (confusion matrices...) side by side here (a file, or a "
                                                     "folder: compare.html in it); none is written without it"),
            json_out: bool = JSON, tracking_uri: Optional[str] = TRACKING) -> None:
    """Runs or registered versions side by side: strategy, settings that differ, data version, test/val metrics and
    seconds, from what each run logged; --html PATH also writes their learning curves and confusion matrices."""
    check_fast(tracking_uri, refs)  # an unknown name in about a second, not after MLflow's import
    quiet_third_party()
    from tasks.operate import connect

    reg = connect(tracking_uri)
    names = reg.model_names()
    rows, seen = [], set()
    for ref in refs:
        for row in _runs_of(reg, ref, names):
            if row["run_id"] not in seen:  # the same run named twice (an alias and its version): once
                seen.add(row["run_id"])
                rows.append(row)
    runs = [_read_run(reg.client, r) for r in rows]
    differing, metrics = _differing(runs), _shown_metrics(runs)
    written = None
    if html_path is not None:
        from tlops.errors import TlopsError

        written = _html_path(html_path)
        page = _page(runs, differing, metrics, _logged_plots(reg.client, runs))
        try:
            written.parent.mkdir(parents=True, exist_ok=True)
            written.write_text(page, encoding="utf-8")
        except OSError as e:
            raise TlopsError(f"cannot write the page to {written} ({e.strerror or e}); give --html a path you can write to") from None
    if json_out:
        return print_json({"runs": runs, "differing": differing, "metrics": metrics, "html": str(written) if written else None})
    out.print(_table(runs, differing, metrics))
    if len(runs) == 1:
        out.print("one run: no settings to compare it with (give two or more)")
    elif not differing:
        out.print("the runs' settings are the same")
    if written:
        out.print(f"page: {esc(str(written))}", soft_wrap=True)
    else:
        status("add --html PATH for their learning curves and confusion matrices side by side")


def register(app: typer.Typer) -> None:
    app.command("compare")(user_errors(compare))
