"""The model package: backbone (safetensors + preprocessing files) + head (safetensors) + metadata.

This folder is what gets registered; `Predictor` turns it back into raw-input -> label predictions (or
numbers, for a regression model: its head maps the standardised output back to target units).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tlops.errors import DataError
from tlops.hashing import file_sha256
from tlops.support_set import SupportSet

if TYPE_CHECKING:
    from tlops.modules.heads import ProbeHead

# torch (and safetensors.torch, the heads) are imported where a package is written or loaded, not here: checking a
# package's files (package_manifest, code_manifest, manifest_digest: `tlops predict`, `serve` and `audit` do it
# before loading anything) needs only hashlib, and `import torch` costs seconds.

FORMAT_VERSION = 1
META_FILE = "tlops_model.json"


def save_own_head_package(out_dir: Path, backbone, labels: list[str], head_state: dict, head_file: str, extra: dict) -> Path:
    """A package whose model head is not a `ProbeHead` (a detector's or segmenter's, from torchvision): its state saved as
    `head_file` in the package, and a linear placeholder in the package format's head.safetensors."""
    from safetensors.torch import save_file

    from tlops.modules.heads import ProbeHead

    placeholder = ProbeHead(1, len(labels), kind="linear").eval()  # the package format's head; the model's is `head_file`
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "head.safetensors"
        save_file(head_state, str(state))
        return save_package(out_dir, backbone, placeholder, list(labels), extra=extra, files={head_file: state})


def save_package(out_dir: Path, backbone, head: ProbeHead, labels: list[str], extra: dict | None = None,
                 files: dict[str, Path] | None = None) -> Path:
    """Write atomically: build in a temp folder beside `out_dir`, then rename into place. `files`: more files
    to copy in (package-relative path -> source), e.g. a meta-learned model's adaptation state."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        backbone.export(tmp / "backbone")
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(tmp / "head.safetensors"))
        for rel, src in (files or {}).items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp / rel)
        meta = {
            "format": FORMAT_VERSION,
            "modality": backbone.modality,
            "backbone": {"layers": backbone.layers, "pooling": backbone.pooling, "max_length": backbone.max_length,
                         "identity": package_identity(backbone, tmp / "backbone")},
            "labels": list(labels),
            "task": getattr(head, "task", "classification"),  # what predict returns: labels, or numbers
            "head": head.spec,
            **(extra or {}),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


INPUT_RULES = "inputs"  # the package meta's record of what training did to the texts, applied again at predict time


def record_input_rules(package_dir: str | Path, control_characters: str) -> None:
    """Record in the package what training did to its texts, so predict applies the same to the model's inputs
    (validation.control_characters: strip). Nothing is written for the default (refuse): such packages stay as before."""
    if control_characters == "refuse":
        return
    path = Path(package_dir) / META_FILE
    meta = json.loads(path.read_text())
    if meta.get("modality") != "text":
        return
    meta[INPUT_RULES] = {**meta.get(INPUT_RULES, {}), "control_characters": control_characters}
    path.write_text(json.dumps(meta, indent=1, sort_keys=True))


def package_identity(backbone, exported: Path) -> dict:
    """The backbone identity as packaged. A fine-tuned backbone's weights are the exported files, so their
    sha256 replaces the pretrained one (kept as `fine_tuned_from`)."""
    identity = backbone.identity()
    if not backbone.fine_tuned:
        return identity
    weights = {f.name: file_sha256(f) for f in sorted(exported.glob("*.safetensors"))}
    return {**identity, "weights_sha256": weights, "fine_tuned_from": identity.get("weights_sha256")}


def package_manifest(package_dir: str | Path) -> dict[str, str]:
    """sha256 of every file of a package, by POSIX relative path: what an audit checks the registered copy against."""
    root = Path(package_dir)
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


DOWNLOAD_ONLY = {"registered_model_meta"}  # written by MLflow into a models:/NAME/VERSION download (name, version); never loaded


def code_manifest(model_dir: str | Path) -> dict[str, str]:
    """sha256 of every file of a logged MLflow model outside its `artifacts/` (MLmodel, the pyfunc file, the
    bundled tlops code, requirements): what `mlflow.pyfunc.load_model` runs. The package is checked apart."""
    return {k: v for k, v in package_manifest(model_dir).items() if not k.startswith("artifacts/") and k not in DOWNLOAD_ONLY}


def drop_bytecode(model_dir: Path) -> list[str]:
    """Remove the `__pycache__` folders from a downloaded model copy; their files' relative paths. MLflow's own loaders
    (`mlflow.pyfunc.load_model`, `mlflow models serve`) import a model's code where a local store keeps it, so Python
    writes `.pyc` files there; registration recorded none. Left in, every later check would refuse the model as changed;
    checked instead, they would still not be what runs (a `.pyc` is loaded in place of its source when its header
    matches): removed from the copy tlops loads, only the checked `.py` sources run."""
    found = []
    for folder in sorted(p for p in model_dir.rglob("__pycache__") if p.is_dir()):
        found += [f.relative_to(model_dir).as_posix() for f in sorted(folder.rglob("*")) if f.is_file()]
        shutil.rmtree(folder)
    return found


def manifest_digest(manifest: dict[str, str]) -> str:
    """One sha256 over a manifest (kept as a model version tag, so the manifest itself is checked too)."""
    import hashlib

    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


class Predictor:
    """Raw inputs -> labels, from a saved package; no cache, no tracking. A meta-transfer package also adapts
    to a support set given with the inputs (few-shot serving): predictions are then over its classes."""

    def __init__(self, package_dir: str | Path, batch_size: int = 64):
        from safetensors.torch import load_file

        from tlops.backbones import backbone_from_export
        from tlops.modules.heads import ProbeHead

        root = Path(package_dir)
        self.root = root  # the package folder (a task type that packs more files reads them from here)
        self.meta = json.loads((root / META_FILE).read_text())
        self.backbone = backbone_from_export(root / "backbone", self.meta)
        self.head = ProbeHead.from_spec(self.meta["head"])  # a regression head's spec says so (task), with its target scaler
        self.head.load_state_dict(load_file(str(root / "head.safetensors")))
        self.head.eval()
        self.labels = self.meta["labels"]
        self.batch_size = batch_size
        self.few_shot = None
        if "few_shot" in self.meta:
            from tlops.fewshot_predictor import FewShotAdapter

            self.few_shot = FewShotAdapter(root, self.meta["few_shot"], self.backbone)
        # backbone parameters the registered head goes with (adapted to the registered support set by the inner loop), if any
        self._registered_backbone = self.few_shot.registered_backbone() if self.few_shot else {}
        self._adapted: tuple[SupportSet, ProbeHead, list[str], dict] | None = None  # the last support set's classifier (a server's
        # clients tend to send the same support set with every request)

    @property
    def modality(self) -> str:
        return self.meta["modality"]

    @property
    def strips_control_characters(self) -> bool:
        """Trained with validation.control_characters: strip: the same characters are stripped from every input."""
        return self.meta.get(INPUT_RULES, {}).get("control_characters") == "strip"

    def _inputs(self, items: Sequence, where: str = "input") -> list[str]:
        """The rows as the model was trained to see them: checked (missing, empty, NUL refused), and stripped of control
        characters when its training stripped them (an input of nothing else is refused, as training refuses it)."""
        from tlops.support_set import check_inputs, strip_control_characters

        rows = check_inputs(list(items), where)
        if not self.strips_control_characters:
            return rows
        out = [strip_control_characters(x) for x in rows]
        for i, x in enumerate(out, start=1):
            if not x.strip():
                raise DataError(f"{where} row {i} holds only control characters and whitespace ({rows[i - 1][:40]!r}), nothing "
                                "left once they are stripped (as in training); give it text")
        return out

    @property
    def task(self) -> str:
        """classification (labels out) or regression (numbers out)."""
        return self.meta.get("task", "classification")

    @property
    def _task_type(self):
        from tlops.task_types import task_type

        return task_type(self.task)

    def support(self, rows_or_json) -> SupportSet:
        """A support set for this model from a JSON string or a list of {"text"|"path": ..., "label": ...} rows, checked."""
        from tlops.support_set import support_from_json, support_from_rows

        if self.few_shot is None:
            strategy = (self.meta.get("strategy") or {}).get("name", "unknown")
            raise DataError(f"this model (strategy {strategy}) was not meta-trained, so it cannot adapt to a "
                            "support set at predict time; train it with strategy protonet, maml, fomaml or meta_sgd, or predict "
                            "without a support set")
        numeric = self._task_type.numeric_target  # a few-shot regressor: labels are the rows' target values
        if isinstance(rows_or_json, str):
            support = support_from_json(rows_or_json, self.modality, numeric=numeric)
        else:
            support = support_from_rows(rows_or_json, self.modality, numeric=numeric)
        if self.strips_control_characters:  # the support rows are inputs too
            support = SupportSet(inputs=tuple(self._inputs(support.inputs, "support")), labels=support.labels)
        return support

    def classifier(self, support: SupportSet | None = None) -> tuple[ProbeHead, list[str]]:
        """(head, its classes): the registered head, or the meta-learned encoder adapted to `support`."""
        return self._classifier(support)[:2]

    def _classifier(self, support: SupportSet | None) -> tuple[ProbeHead, list[str], dict]:
        """(head, classes, the backbone parameters its features need: {} for the package's own backbone)."""
        if support is None:
            return self.head, self.labels, self._registered_backbone
        if self._adapted is None or self._adapted[0] != support:
            classes = support.classes()
            index = {c: i for i, c in enumerate(classes)}
            targets = np.array([index[label] for label in support.labels])
            if self.few_shot.adapts_backbone:  # the support's raw rows adapt backbone groups too
                head, params = self.few_shot.adapt_inputs(list(support.inputs), targets, len(classes))
            else:
                head, params = self.few_shot.head(self._embed(list(support.inputs)), targets, len(classes)), {}
            self._adapted = (support, head, classes, params)
        return self._adapted[1:]

    def classes(self, support: SupportSet | None = None) -> list[str]:
        return self.classifier(support)[1]

    def _embed(self, items: list[str], backbone_params: dict | None = None) -> np.ndarray:
        """Features of items: the package's backbone, with `backbone_params` (adapted groups) swapped in if given."""
        from tlops.features import embed_all

        backbone = self.backbone
        if backbone_params:
            from tlops.fewshot_predictor import AdaptedBackbone

            backbone = AdaptedBackbone(self.few_shot.backbone, backbone_params)
        return embed_all(backbone, items, batch_size=self.batch_size)

    def predict_proba(self, items: Sequence[str], support: SupportSet | None = None) -> np.ndarray:
        """(N, classes) probabilities; columns in the order of `classes(support)`."""
        kind = self._task_type
        if kind.numeric_target:
            raise DataError(f"this model predicts numbers (a {kind.name} model): it has no class probabilities; "
                            "predict without proba")
        if not kind.class_probabilities:
            raise DataError(f"this model predicts {kind.predicts(self.labels)} (a {kind.name} model): it has no class "
                            "probabilities per input; predict without proba")
        import torch

        head, _, backbone_params = self._classifier(support)
        feats = self._embed(self._inputs(items), backbone_params)
        with torch.inference_mode():
            return torch.softmax(head(torch.from_numpy(feats)), dim=1).numpy()

    def predict(self, items: Sequence[str], support: SupportSet | None = None) -> list:
        """Labels, or floats (in the target's units) for a regression model; what the task type returns when it owns
        the outputs (token classification: per input, its entity spans with character offsets)."""
        if len(items) == 0:
            return []
        from tlops.task_types import task_type

        kind = task_type(self.task)
        owned = kind.predict(self, kind.prediction_inputs(self, items)) if support is None else None
        if owned is not None:
            return owned
        if self._task_type.numeric_target:
            from tlops.modules.heads import predict_values

            head = self.head
            if support is not None:
                if self.few_shot is None:
                    self.support(support)  # refuses, saying why: this regression model was not meta-trained
                if self._adapted is None or self._adapted[0] != support:  # a few-shot regressor adapted to the support's task
                    self._adapted = (support, self.few_shot.regression_head(self._embed(list(support.inputs)), support.values()), [], {})
                head = self._adapted[1]
            return predict_values(head, self._embed(self._inputs(items)))
        classes = self.classes(support)
        return [classes[i] for i in self.predict_proba(items, support).argmax(1)]


def write_package(result, backbone, labels: list[str], out_dir: Path, extra: dict) -> Path:
    """The model package of a train step's result (`tlops.records`): a head's, written here with `backbone()` (the
    pretrained one) and its few-shot adaptation files if it has them; a package the train step wrote itself, as is."""
    if result.kind == "package":
        return Path(result.package)
    from tlops.modules.heads import load_head
    from tlops.selection_record import SELECTION_FILE, selection_file

    chosen = selection_file(result)  # the record of a label-free choice among candidates, when the strategy wrote one
    selection = {SELECTION_FILE: chosen} if chosen is not None else {}

    if result.meta_learner is not None:
        from tlops.fewshot_predictor import package_files

        files, meta = package_files(result.meta_learner)
        return save_package(out_dir, backbone(), load_head(result), result.labels or labels, extra={**extra, "few_shot": meta},
                            files={**files, **selection})
    return save_package(out_dir, backbone(), load_head(result), result.labels or labels, extra=extra, files=selection)


def result_predictions(result, features, test_inputs) -> list:
    """A train step's result on the test split: a head on the cached test features (they are its backbone's): labels,
    or numbers for a regression head; a whole package (its own trained backbone) on the raw test inputs `test_inputs()`."""
    if result.kind == "package":
        return Predictor(result.package).predict(test_inputs())
    from tlops.modules.heads import load_head, predict_outputs

    x, _ = features.arrays("test")
    return predict_outputs(load_head(result), x, result.labels or features.labels)


def as_items(model_input) -> list:
    """Whatever a pyfunc or a server hands over (a list, a pandas Series or DataFrame, a numpy array, one
    string) as a list of raw inputs: a DataFrame's `text` or `path` column, else its first column. Values
    are kept as given (a missing cell stays None/NaN), so `Predictor` can refuse them by row."""
    import pandas as pd

    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.DataFrame):
        col = next((c for c in ("text", "path") if c in model_input.columns), model_input.columns[0])
        model_input = model_input[col]
    return [x if x is None or isinstance(x, str) or (isinstance(x, float) and x != x) else str(x) for x in list(model_input)]
