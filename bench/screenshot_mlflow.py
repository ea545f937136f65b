"""What a person sees, checked in a real browser: headless Chromium screenshots the MLflow experiment page, the
run page, the run's model card in MLflow's artifact viewer, and the model card on its own, and checks that the
experiment opens on its runs (the model-training view that lists the run), not on MLflow 3's GenAI view.

    .venv/bin/python -m bench.screenshot_mlflow [CONFIG] [--out bench/out/screenshots]

Starts `mlflow server` on a temporary SQLite store at 127.0.0.1 (a free port), runs `tlops run CONFIG` against it
(the real CLI; default configs/text_linear_probe.yaml on the repository's feature cache: about a minute when the
cache is warm), takes the three screenshots, checks each is not blank (pixel spread), prints their paths, and
stops the server. Needs Debian's `chromium` (in the Makefile's APT_PACKAGES). Look at the PNGs: that is the point.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import Services, start_mlflow_server, tlops_cli  # noqa: E402  (real servers on free ports)

# The MLflow UI is a single-page app that fetches the run after the page loads: give its scripts virtual time to
# finish before the screenshot (Chromium fast-forwards timers, so this is not a wall-clock wait).
SPA_BUDGET_MS = 20000


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("error: headless Chromium is not installed: `apt-get install chromium` (in the Makefile's APT_PACKAGES)")
    return exe


def headless(url: str, profile_dir: Path, *flags: str, budget_ms: int = 0) -> subprocess.CompletedProcess:
    """Headless Chromium on `url` with `flags` (a screenshot, a DOM dump), its profile under `profile_dir`; `budget_ms`:
    virtual time for the page's scripts."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={profile_dir / '.chromium-profile'}", *flags]
    if budget_ms:
        cmd.append(f"--virtual-time-budget={budget_ms}")
    return subprocess.run([*cmd, url], capture_output=True, text=True, timeout=120)


def screenshot(url: str, out: Path, size: tuple[int, int], budget_ms: int = 0) -> Path:
    proc = headless(url, out.parent, "--hide-scrollbars", f"--screenshot={out}", f"--window-size={size[0]},{size[1]}",
                    budget_ms=budget_ms)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"chromium failed on {url} ({proc.returncode}): {proc.stderr[-2000:]}")
    return out


def dom(url: str, out_dir: Path, budget_ms: int) -> str:
    """The page's DOM after its scripts ran (Chromium's --dump-dom, with the same virtual-time budget)."""
    proc = headless(url, out_dir, "--dump-dom", budget_ms=budget_ms)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed on {url} ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


# MLflow 3's GenAI view of an experiment and its popup. The UI's GenAI / Model training switch is the link's
# `workflowType` parameter, else the browser's localStorage (default GenAI): the experiment's
# mlflow.experimentKind tag does not choose it (MLflow 3.17), so the links tlops prints carry the parameter.
GENAI_VIEW = ("Detect issues", "Latency")  # its popup and an Overview panel ("Traces" is a tab of both views)
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def ink(png: Path) -> float:
    """Standard deviation of the grey levels: near 0 for a blank (or single-colour) page."""
    import numpy as np
    from PIL import Image

    return float(np.asarray(Image.open(png).convert("L"), dtype=np.float32).std())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", default=str(REPO / "configs" / "text_linear_probe.yaml"))
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "screenshots"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="tlops-screenshots-"))
    svc = Services(root)
    try:
        url = start_mlflow_server(svc)
        run = tlops_cli("run", args.config, "--json", "--set", f"tracking.uri={url}", "--set", "tracking.experiment=tlops-screenshots",
                        "--set", f"execution.work_dir={root / 'runs'}", "--set", f"features.cache_dir={REPO / '.tlops' / 'cache'}",
                        timeout=900)
        if run.returncode != 0:
            raise RuntimeError(f"tlops run failed ({run.returncode}):\n{run.stderr[-3000:]}")
        outcome = json.loads(run.stdout.strip().splitlines()[-1])
        from mlflow.tracking import MlflowClient

        client = MlflowClient(url)
        run_id = outcome["run_id"]
        exp = client.get_run(run_id).info.experiment_id
        card = Path(client.download_artifacts(run_id, "model_card.html", str(root)))
        shots = {
            "mlflow_experiment_page.png": (f"{url}/#/experiments/{exp}?{MODEL_TRAINING_VIEW}", (1400, 1000), SPA_BUDGET_MS),
            "mlflow_experiment_page_no_view_parameter.png": (f"{url}/#/experiments/{exp}", (1400, 1000), SPA_BUDGET_MS),
            "mlflow_run_page.png": (f"{url}/#/experiments/{exp}/runs/{run_id}", (1400, 1400), SPA_BUDGET_MS),
            "mlflow_model_card_artifact.png": (f"{url}/#/experiments/{exp}/runs/{run_id}/artifacts/"
                                               f"{urllib.parse.quote('model_card.html')}", (1400, 1400), SPA_BUDGET_MS),
            "model_card.png": (card.as_uri(), (1200, 4000), 0),
        }
        report = {}
        for name, (page, size, budget) in shots.items():
            png = screenshot(page, out / name, size, budget)
            report[name] = {"url": page, "size": list(size), "grey_std": round(ink(png), 1)}
            print(f"{png}  grey std {report[name]['grey_std']}  <- {page}")
        shutil.copy2(card, out / "model_card.html")
        # issue 27 item 9: the experiment opens on its runs (the model-training view), not on MLflow's GenAI view
        run_name = client.get_run(run_id).info.run_name
        page = dom(f"{url}/#/experiments/{exp}?{MODEL_TRAINING_VIEW}", out, SPA_BUDGET_MS)
        (out / "mlflow_experiment_page.html").write_text(page)
        genai = [w for w in GENAI_VIEW if w in page]
        opens_on_runs = run_name in page and not genai
        print(f"experiment page (?{MODEL_TRAINING_VIEW}) lists run {run_name!r}: {run_name in page}; GenAI view words present: "
              f"{genai or 'none'}")
        plain = dom(f"{url}/#/experiments/{exp}", out, SPA_BUDGET_MS)
        print(f"  without the parameter (a fresh browser): lists the run: {run_name in plain}; GenAI view words present: "
              f"{[w for w in GENAI_VIEW if w in plain] or 'none'}")
        (out / "screenshots.json").write_text(json.dumps({"run_id": run_id, "model": f"{outcome['model_name']}/{outcome['version']}",
                                                          "experiment_opens_on_runs": opens_on_runs, "shots": report}, indent=1))
        blank = [n for n, r in report.items() if r["grey_std"] < 10]
        if blank:
            print(f"error: nearly blank screenshot(s): {blank}", file=sys.stderr)
            return 1
        if not opens_on_runs:
            print(f"error: the experiment page does not open on its runs (run {run_name!r} listed: {run_name in page}; "
                  f"GenAI view words: {genai})", file=sys.stderr)
            return 1
        return 0
    finally:
        svc.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
