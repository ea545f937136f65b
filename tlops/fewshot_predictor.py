"""Few-shot serving: a meta-transfer package keeps what adapting needs, so a support set given at predict time
gives a classifier over its own classes, with no retraining and no new registered version.

The package's `few_shot/` folder holds the meta-learned encoder and adaptation rule (`learner.safetensors`:
`encoder.*` standardisation and projection, `learner.*` Meta-SGD's alphas) and the support set the
registered head was adapted to (`support.safetensors`: its backbone features and class indices); the
algorithm, inner-loop settings, encoder shape and the support's labels are JSON in
`tlops_model.json` under `few_shot`. The support's raw rows are not copied: the train step works on cached
features (on a work pool the data folder may not be there); the run's data version names them. Adapting goes through `tlops.training.meta.adapted_head`, the very
function that made the registered head. The features are always those of the package's own backbone: the
pretrained one, or (`strategy.trainable` > 0) the meta-trained one the package holds, which then also embeds
the support features stored here and every support set given at predict time. When the inner loop adapts
backbone groups too (`inner_groups` > 0), a support set given at predict time goes through the backbone raw
(its rows adapt those groups), and `adapted_backbone.safetensors` holds the groups as adapted to the
registered support set, which the package's plain predictions use; the exported backbone is the meta-learned
starting point every adaptation begins from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tlops.modules.heads import ProbeHead
from tlops.records import MetaLearnerState

FOLDER = "few_shot"
STATE_FILE = f"{FOLDER}/learner.safetensors"
SUPPORT_FILE = f"{FOLDER}/support.safetensors"
ADAPTED_FILE = f"{FOLDER}/adapted_backbone.safetensors"
SELECTION_FILE = "selection.json"  # at the package's root, as every family's selection record


def save_meta_state(out_dir: Path, encoder, learner, inner_lr: float, encoder_spec: dict, support_x: np.ndarray, support_y: np.ndarray,
                    support_labels: list[str], adapted_backbone: dict[str, torch.Tensor] | None = None,
                    target_scaler: tuple[float, float] | None = None, *, task: str) -> MetaLearnerState:
    """Write the encoder + adaptation rule and the support set (features, class indices) beside the head, and the
    backbone parameters as adapted to that support set when the inner loop adapts some. `target_scaler` (mean, std):
    a few-shot regressor's, whose support y are target values. `task`: the dataset's task type (what predict adapts)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"encoder.{k}": v for k, v in encoder.state_dict().items()} | {f"learner.{k}": v for k, v in learner.state_dict().items()}
    state, support = out_dir / "meta_learner.safetensors", out_dir / "meta_support.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(state))
    save_file({"x": torch.from_numpy(np.ascontiguousarray(support_x, dtype=np.float32)),
               "y": torch.from_numpy(np.ascontiguousarray(support_y, dtype=np.float64 if target_scaler else np.int64))}, str(support))
    adapted = None
    if learner.backbone_names:
        adapted = out_dir / "meta_adapted_backbone.safetensors"
        save_file({k: adapted_backbone[k].detach().cpu().contiguous() for k in learner.backbone_names}, str(adapted))
    return MetaLearnerState(algorithm=learner.algorithm, inner_lr=inner_lr,
                            inner_steps=learner.inner_steps, anil=learner.anil, encoder=encoder_spec, state_path=str(state),
                            support_path=str(support), support_labels=list(support_labels),
                            backbone_params=learner.backbone_names, adapted_backbone_path=str(adapted) if adapted else None,
                            task=task,
                            target_scaler=list(target_scaler) if target_scaler else None)


def package_files(state: MetaLearnerState) -> tuple[dict[str, Path], dict]:
    """(package-relative path -> file to copy, the JSON block for tlops_model.json) of a meta-learned head."""
    meta = state.model_dump(exclude={"state_path", "support_path", "adapted_backbone_path"}) | {"state_file": STATE_FILE,
                                                                                               "support_file": SUPPORT_FILE}
    files = {STATE_FILE: Path(state.state_path), SUPPORT_FILE: Path(state.support_path)}
    if state.adapted_backbone_path:
        files[ADAPTED_FILE] = Path(state.adapted_backbone_path)
        meta["adapted_backbone_file"] = ADAPTED_FILE
    selection = Path(state.state_path).parent / SELECTION_FILE  # a few-shot classifier's candidates and choice (issue 30)
    if selection.is_file():
        files[SELECTION_FILE] = selection
    return files, meta


class FewShotAdapter:
    """The packaged encoder + adaptation rule: support features and targets (class indices, or a regressor's values) ->
    an adapted `ProbeHead`; when the inner loop adapts backbone groups, support inputs -> the head and those groups'
    adapted parameters. `backbone`: the package's backbone (needed only then). The task type's few-shot part
    (`TaskType.few_shot_options`) rebuilds the adaptation rule and adapts: nothing here branches on the task."""

    def __init__(self, root: Path, meta: dict, backbone=None):
        from tlops.task_types import task_type
        from tlops.training.meta import BackboneFunction, Encoder

        self.meta = meta
        tensors = load_file(str(Path(root) / meta["state_file"]))
        part = {p: {k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(f"{p}.")} for p in ("encoder", "learner")}
        e = meta["encoder"]
        self.encoder = Encoder(e["in_dim"], e["kind"], e["hidden"], e["out_dim"], part["encoder"]["mean"], part["encoder"]["std"])
        self.encoder.load_state_dict(part["encoder"])
        names = meta.get("backbone_params") or []
        self.backbone = BackboneFunction(backbone) if names else None
        shapes = {k: p.shape for k, p in self.backbone.model.named_parameters()} if names else {}
        missing = [k for k in names if k not in shapes]
        if missing:
            raise ValueError(f"{root}: few_shot.backbone_params names {missing[:3]} that the package's backbone does not have; "
                             "the package is damaged or from another backbone: re-register it from its run")
        kind = task_type(meta.get("task") or "classification")
        self.few_shot = kind.few_shot_options()  # the task type's few-shot part: its adaptation rule and head
        if self.few_shot is None:
            raise ValueError(f"{root}: a few-shot package of a {kind.name} model, which has no few-shot learning; re-register it from its run")
        self.learner = self.few_shot.restore_learner(self.encoder, meta, {k: shapes[k] for k in names})
        self.target = self.few_shot.restore_target(meta)  # a regressor's target scaler; None for classes
        self.learner.load_state_dict(part["learner"])  # strict: Meta-SGD's alphas must all be there, nothing else
        self.encoder.eval()
        self.support_file = Path(root) / meta["support_file"]
        self.adapted_file = Path(root) / meta["adapted_backbone_file"] if names else None
        selection = Path(root) / SELECTION_FILE
        # the candidates a support set chooses among (packages from before issue 30 have none: the meta-learned rule only)
        self.selection = json.loads(selection.read_text()) if selection.is_file() else None
        self.last_selection: dict | None = None  # the record of the last support set adapted to (`head`)

    @property
    def adapts_backbone(self) -> bool:
        return self.backbone is not None

    def adapt(self, features: np.ndarray, targets: np.ndarray, n_classes: int | None = None) -> ProbeHead:
        """The head adapted to a support set's features and targets, as the task type adapts: class indices into
        `n_classes` classes, or a regressor's target values (a head in the target's unit)."""
        return self.few_shot.adapted_head(self, features, targets, n_classes)

    def head(self, features: np.ndarray, targets: np.ndarray, n_classes: int) -> ProbeHead:
        """A classifier of a support set's classes: the candidate its own held-out accuracy prefers, chosen again among the
        registered record's candidates (`tlops.training.meta_selection`; `last_selection` holds the new record), or the
        meta-learned rule's head (a package without a selection record, or registered with `selection: meta`)."""
        from tlops.training import meta_selection as ms

        sel = self.selection
        if sel is None or not ms.reselects(sel):
            return self.adapt(features, targets, n_classes)

        names = [c["name"] for c in sel["candidates"]]
        excluded = {c["name"]: c["excluded"] for c in sel["candidates"] if c.get("excluded")}
        val = {c["name"]: c["scores"].get(ms.FALLBACK) for c in sel["candidates"]}
        temperatures: dict[str, float] = {}  # a chosen pool's members' calibration, fitted once by the choice
        record = ms.select(self.encoder, self.learner, features, targets, n_classes, names, val, excluded, temperatures)
        self.last_selection = record
        if record["chosen"] == "meta_learned":
            return self.adapt(features, targets, n_classes)
        return ms.candidate_head(record["chosen"], self.encoder, self.learner, features, targets, n_classes, temperatures)

    def regression_head(self, features: np.ndarray, values: np.ndarray) -> ProbeHead:
        return self.adapt(features, values)

    def adapt_inputs(self, items: list[str], targets: np.ndarray, n_classes: int) -> tuple[ProbeHead, dict[str, torch.Tensor]]:
        """(head, adapted backbone parameters) for a support set's raw inputs (inner backbone groups), in eval mode."""
        from tlops.training.meta import adapted_head

        bb = self.backbone.backbone
        self.backbone.model.eval()
        return adapted_head(self.learner, self.encoder, bb.collate(bb.encode(list(items))), torch.as_tensor(targets, dtype=torch.long),
                            n_classes, self.backbone)

    def registered_backbone(self) -> dict[str, torch.Tensor]:
        """The backbone parameters as adapted to the registered support set (empty when the inner loop adapts none)."""
        return load_file(str(self.adapted_file)) if self.adapted_file else {}

    def registered_support(self) -> tuple[np.ndarray, np.ndarray]:
        """The features and class indices (into the package's labels; a regressor's: target values) of the support set the
        registered head was adapted to."""
        t = load_file(str(self.support_file))
        return t["x"].numpy(), t["y"].numpy()


class AdaptedBackbone:
    """A backbone whose `embed` runs with some parameters swapped for a task's adapted ones; the rest (encode,
    collate, model, ...) is the backbone's."""

    def __init__(self, function, params: dict[str, torch.Tensor]):
        self._function, self._params = function, params

    def embed(self, batch) -> torch.Tensor:
        return self._function.embed(self._params, batch)

    def __getattr__(self, name: str):
        return getattr(self._function.backbone, name)
