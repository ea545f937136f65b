"""Transferability ranking (issue 31): does `tlops rank`'s LogME (and H-score) order candidate backbones as their
actual linear probes do? Per demo set, every candidate embeds train (a seeded sample of at most MAX_TRAIN rows: the
machine is small and shared), val and test; the scores are computed on the train rows, and the probe (tlops's own
`train_probe`: logistic regression at the demo configs' C = 0.1 for classes, ridge with alpha picked on val MAE for
numbers) is trained on the same rows and scored on test (accuracy; R²). Weighted Kendall tau (scipy.stats.weightedtau,
as TLlib reports it) between each score and the test metric; and whether the random-weights candidates rank last.

Candidates include deliberately poor ones: the same architecture with random weights (seed 0), a small random BERT,
a random ResNet-18, and off-task models (CREPE, trained to track pitch, on spoken words; speech_embedding, trained to
recognise words, on voice pitch). An off-modality model cannot be a candidate: tlops refuses a text backbone on images.

  python -m bench.rank [text image audio text_regression image_regression audio_regression audio_pitch] [--out=NAME]

writes bench/out/rank.json (`--out=NAME`: bench/out/NAME.json, to run sets in two processes);
`python -m bench.rank --report rank [rank_text]` prints the Markdown tables of bench/RESULTS.md. Random-weight variants
are cached under their own identity (a `bench_init` key), never under the pretrained weights' namespace."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import REPO, save
from tlops.backbones import load_backbone
from tlops.cache import FeatureCache
from tlops.data import load_dataset
from tlops.features import cached_features
from tlops.transferability.rank import parameter_count, subsample
from tlops.transferability.scores import h_score, logme

MAX_TRAIN = 600
CACHE = REPO / ".tlops" / "cache"  # the demo configs' cache: pretrained features a `tlops run` already made are reused
C = 0.1  # the classification probe's C, as in the demo configs (one fit per candidate: the machine is shared)
MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"
TMP = Path(tempfile.gettempdir()) / "tlops-bench-rank"


def _random_bert(like: str, name: str, **shape) -> str:
    """A BERT folder with random weights (seed 0) and MiniLM's tokenizer: `like`'s architecture, or the given shape."""
    from transformers import AutoConfig, BertConfig, BertModel

    pre = load_backbone(like)
    folder = TMP / name
    if not (folder / "done").exists():
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=30522, max_position_embeddings=512, **shape) if shape else AutoConfig.from_pretrained(pre.folder)
        BertModel(cfg).save_pretrained(folder, safe_serialization=True)
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy2(pre.folder / f, folder / f)
        (folder / "done").touch()
    return f"hf:{folder}"


def _random_resnet18() -> str:
    import torchvision.models as tvm
    from safetensors.torch import save_file

    path = TMP / "resnet18-random.safetensors"
    if not path.exists():
        TMP.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        save_file({k: v.contiguous() for k, v in tvm.resnet18().state_dict().items()}, str(path))
    return f"torchvision:resnet18@{path}"


def _randomised(backbone, kind: str):
    """The same backbone object with its weights re-initialised (seed 0), as bench/regression.py builds its controls."""
    torch.manual_seed(0)
    if kind == "efficientnet-lite0":
        from efficientnet_lite_pytorch import EfficientNet

        backbone._model = EfficientNet.from_name("efficientnet-lite0", image_size=backbone.image_size).eval()
        return backbone
    for m in backbone.model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "weight") and isinstance(m.weight, torch.nn.Parameter) and m.weight.dim() == 4:
            torch.nn.init.kaiming_uniform_(m.weight, a=0.2)
    return backbone


# per set: (data folder, backbone options, candidates: (label, name or builder, random-init kind or None, poor?))
def _sets() -> dict:
    img = {"image_size": 64}
    return {
        "text": ("text_wordnet", {"layers": [-1]}, [
            ("MiniLM-L6 (pretrained)", MINILM, None, False),
            ("MiniLM-L6, layer 1 of 6", (MINILM, {"layers": [1]}), None, False),
            ("MiniLM-L6 random weights", lambda: _random_bert(MINILM, "minilm-random"), None, True),
            ("BERT 2x64 random weights", lambda: _random_bert(MINILM, "bert-2x64-random", hidden_size=64, num_hidden_layers=2,
                                                              num_attention_heads=2, intermediate_size=128), None, True)]),
        "image": ("image_fashion_mnist", img, [
            ("EfficientNet-Lite0 (ImageNet)", "packaged:efficientnet-lite0", None, False),
            ("EfficientNet-Lite0 random weights", "packaged:efficientnet-lite0", "efficientnet-lite0", True),
            ("ResNet-18 random weights", _random_resnet18, None, True)]),
        "audio": ("audio_keywords", {"clip_seconds": 1.0}, [
            ("speech_embedding (pretrained)", "packaged:speech-embedding", None, False),
            ("CREPE tiny (pitch-trained: off-task)", "packaged:crepe-tiny", None, False),
            ("speech_embedding random weights", "packaged:speech-embedding", "reset", True)]),
        "text_regression": ("text_regression", {"layers": [-2]}, [
            ("MiniLM-L6 (pretrained), layer -2", MINILM, None, False),
            ("MiniLM-L6 (pretrained), layer -1", (MINILM, {"layers": [-1]}), None, False),
            ("MiniLM-L6 random weights", lambda: _random_bert(MINILM, "minilm-random"), None, True)]),
        "image_regression": ("image_regression", img, [
            ("EfficientNet-Lite0 (ImageNet)", "packaged:efficientnet-lite0", None, False),
            ("EfficientNet-Lite0 random weights", "packaged:efficientnet-lite0", "efficientnet-lite0", True),
            ("ResNet-18 random weights", _random_resnet18, None, True)]),
        "audio_regression": ("audio_regression", {"clip_seconds": 1.0}, [
            ("speech_embedding (pretrained)", "packaged:speech-embedding", None, False),
            ("CREPE tiny (pitch-trained)", "packaged:crepe-tiny", None, False),
            ("speech_embedding random weights", "packaged:speech-embedding", "reset", True)]),
        "audio_pitch": ("audio_pitch", {"clip_seconds": 0.6}, [
            ("CREPE tiny (pitch-trained)", "packaged:crepe-tiny", None, False),
            ("speech_embedding (word-trained: off-task)", ("packaged:speech-embedding", {"clip_seconds": 1.0}), None, False),  # its window needs ~0.8 s
            ("CREPE tiny random weights", "packaged:crepe-tiny", "reset", True)]),
    }


def _load(spec, options: dict, init: str | None):
    name, over = spec if isinstance(spec, tuple) else (spec() if callable(spec) else spec, {})
    b = load_backbone(name, **{**options, **over})
    identity = b.identity()
    if init:
        b = _randomised(b, init)
        identity = {**identity, "bench_init": "random weights, torch seed 0"}
    return name, b, identity


def _probe(x: dict, y: dict, regression: bool, n_classes: int) -> dict:
    from tlops.evaluate import regression_metrics
    from tlops.modules.heads import predict_values
    from tlops.strategies.linear_probe import LinearProbeConfig
    from tlops.task_types import train_probe

    if regression:
        r = train_probe(x["train"], y["train"], x["val"], y["val"], 0, LinearProbeConfig(head="ridge"), seed=0, task="regression")
        m = regression_metrics(y["test"], np.asarray(predict_values(r.head, x["test"])))
        return {"test_r2": m["r2"], "test_mae": m["mae"], "metric": m["r2"]}
    r = train_probe(x["train"], y["train"], x["val"], y["val"], n_classes, LinearProbeConfig(head="logreg", C=C), seed=0,
                    task="classification")
    with torch.inference_mode():
        pred = r.head(torch.from_numpy(x["test"])).argmax(1).numpy()
    acc = float((pred == y["test"]).mean())
    return {"test_accuracy": acc, "val_macro_f1": r.val_metrics["macro_f1"], "metric": acc}


def run_set(key: str) -> dict:
    folder, options, candidates = _sets()[key]
    ds = load_dataset(REPO / "data" / folder, seed=0)
    regression = ds.numeric_target
    cache = FeatureCache(CACHE)
    rows = subsample(len(ds.splits["train"]), MAX_TRAIN, 0)
    out = []
    for label, spec, init, poor in candidates:
        name, b, identity = _load(spec, options, init)
        t0 = time.perf_counter()
        x, y = {}, {}
        for split in ("train", "val", "test"):
            inputs = ds.inputs(split)
            idx = rows if split == "train" else np.arange(len(inputs))
            x[split], _ = cached_features(b, [inputs[i] for i in idx], cache, batch_size=32, identity=identity)
            y[split] = ds.y(split)[idx]
        t1 = time.perf_counter()
        scores = {"logme": logme(x["train"], y["train"], regression=regression)}
        t2 = time.perf_counter()
        if not regression:
            scores["h_score"] = h_score(x["train"], y["train"])
        probe = _probe(x, y, regression, len(ds.labels or []))
        row = {"candidate": label, "backbone": name, "random_weights": bool(init) or "random" in label, "poor": poor,
               **scores, **probe, "num_features": int(x["train"].shape[1]), "parameters": parameter_count(b),
               "embed_seconds": round(t1 - t0, 2), "logme_seconds": round(t2 - t1, 3)}
        print(key, {k: row[k] for k in ("candidate", "logme", "metric")}, flush=True)
        out.append(row)
    return {"data": f"data/{folder}", "task": ds.task, "train_rows_scored": len(rows), "train_rows": len(ds.splits["train"]),
            "candidates": out, **_agreement(out)}


def _agreement(rows: list[dict]) -> dict:
    """Weighted Kendall tau of each score against the probe's test metric, and whether the poor candidates rank last."""
    from scipy.stats import weightedtau

    metric = np.array([r["metric"] for r in rows])
    res = {}
    for score in ("logme", "h_score"):
        if all(score in r for r in rows):
            s = np.array([r[score] for r in rows])
            res[f"tau_{score}"] = float(weightedtau(s, metric).statistic)
            order = np.argsort(-s)
            poor = {i for i, r in enumerate(rows) if r["random_weights"]}
            res[f"{score}_random_last"] = set(order[len(rows) - len(poor):].tolist()) == poor
            res[f"{score}_top_is_best"] = bool(order[0] == int(np.argmax(metric)))
    return res


def main(keys: list[str], name: str = "rank") -> dict:
    """Each set is saved as soon as it is done, beside the sets an earlier call measured (bench/out/<name>.json)."""
    import json

    from bench.common import OUT

    torch.set_num_threads(2)
    previous = OUT / f"{name}.json"
    results = json.loads(previous.read_text()).get("sets", {}) if previous.is_file() else {}
    for k in keys or list(_sets()):
        results[k] = run_set(k)
        done = save(name, {"max_train_rows": MAX_TRAIN, "sets": results})
    return done


def report(names: list[str]) -> str:
    """The Markdown tables of bench/RESULTS.md from bench/out/<name>.json files."""
    import json

    from bench.common import OUT

    lines = []
    for name in names:
        for key, r in json.loads((OUT / f"{name}.json").read_text())["sets"].items():
            regression = r["task"] == "regression"
            metric = "test R²" if regression else "test accuracy"
            lines += [f"**{key}** ({r['data']}, {r['task']}; scores and probe on {r['train_rows_scored']} of {r['train_rows']} "
                      f"training rows): weighted tau LogME {r['tau_logme']:+.2f}"
                      + ("" if regression else f", H-score {r['tau_h_score']:+.2f}")
                      + f"; random weights ranked last by LogME: {'yes' if r['logme_random_last'] else 'no'}"
                      + f"; LogME's top candidate has the best probe: {'yes' if r['logme_top_is_best'] else 'no'}", "",
                      f"| candidate | LogME | {'' if regression else 'H-score | '}{metric} | features | LogME s | embed s |",
                      f"|---|---|{'' if regression else '---|'}---|---|---|---|"]
            for c in sorted(r["candidates"], key=lambda c: -c["logme"]):
                lines.append(f"| {c['candidate']} | {c['logme']:.3f} | " + ("" if regression else f"{c['h_score']:.2f} | ")
                             + f"{c['metric']:.3f} | {c['num_features']} | {c['logme_seconds']:.2f} | {c['embed_seconds']:.0f} |")
            lines.append("")
    return "\n".join(lines)


# `--wall`: `tlops rank` itself, a fresh process per call, on each demo config with the named candidates it can take (the
# random-weight twins above are bench-built, not names); the first call fills the cache, the second is timed
WALL = {"text": ("text_linear_probe.yaml", [MINILM]),
        "image": ("image_linear_probe.yaml", ["packaged:efficientnet-lite0", "torchvision:resnet18@{resnet18}"]),
        "audio": ("audio_linear_probe.yaml", ["packaged:speech-embedding", "packaged:crepe-tiny"]),
        "text_regression": ("text_regression.yaml", [MINILM]),
        "image_regression": ("image_regression.yaml", ["packaged:efficientnet-lite0", "torchvision:resnet18@{resnet18}"]),
        "audio_regression": ("audio_regression.yaml", ["packaged:speech-embedding", "packaged:crepe-tiny"]),
        "audio_pitch": ("audio_pitch.yaml", ["packaged:crepe-tiny", "packaged:speech-embedding"])}


def wall(keys: list[str]) -> dict:
    """Wall seconds of `tlops rank CONFIG --backbones A B --max-rows 600 --json` once cached, per demo set (its MLflow run
    logged to a temporary store)."""
    import json
    import subprocess

    work = Path(tempfile.mkdtemp(prefix="tlops-bench-rankwall-"))
    resnet = work / "resnet18.safetensors"
    torch.manual_seed(0)
    import torchvision
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in torchvision.models.resnet18(weights=None).state_dict().items()}, str(resnet))
    fill = {"resnet18": str(resnet)}
    out = {}
    for key in keys or list(WALL):
        config, names = WALL[key]
        names = [n.format(**fill) for n in names]
        cmd = [sys.executable, "-m", "flows.cli", "rank", str(REPO / "configs" / config), "--backbones", *names, "--max-rows", "600",
               "--json", "--set", f"tracking.uri=sqlite:///{work}/mlflow.db", "--set", f"features.cache_dir={CACHE}"]
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise SystemExit(f"{key}: {done.stderr[-2000:]}")
        r = json.loads(done.stdout.splitlines()[-1])
        out[key] = {"first_s": times[0], "cached_s": times[1], "ranking_s": r["seconds"], "rows": r["rows"],
                    "misses_second": sum(c["cache_misses"] for c in r["candidates"]), "order": [c["name"] for c in r["candidates"]]}
        print(key, out[key], flush=True)
    save("rank_wall", {"sets": out})
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--wall"]:
        wall(args[1:])
        sys.exit(0)
    if args[:1] == ["--report"]:
        print(report(args[1:] or ["rank"]))
        sys.exit(0)
    outs = [a.removeprefix("--out=") for a in args if a.startswith("--out=")]
    main([a for a in args if not a.startswith("--out=")], *outs[-1:])
