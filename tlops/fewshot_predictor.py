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
the support features stored here and every support set given at predict time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tlops.modules.heads import ProbeHead
from tlops.records import MetaLearnerState

FOLDER = "few_shot"
STATE_FILE = f"{FOLDER}/learner.safetensors"
SUPPORT_FILE = f"{FOLDER}/support.safetensors"


def save_meta_state(out_dir: Path, encoder, learner, inner_lr: float, encoder_spec: dict, support_x: np.ndarray, support_y: np.ndarray,
                    support_labels: list[str]) -> MetaLearnerState:
    """Write the encoder + adaptation rule and the support set (features, class indices) beside the head."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"encoder.{k}": v for k, v in encoder.state_dict().items()} | {f"learner.{k}": v for k, v in learner.state_dict().items()}
    state, support = out_dir / "meta_learner.safetensors", out_dir / "meta_support.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(state))
    save_file({"x": torch.from_numpy(np.ascontiguousarray(support_x, dtype=np.float32)),
               "y": torch.from_numpy(np.ascontiguousarray(support_y, dtype=np.int64))}, str(support))
    return MetaLearnerState(algorithm=learner.algorithm, inner_lr=inner_lr,
                            inner_steps=learner.inner_steps, anil=learner.anil, encoder=encoder_spec, state_path=str(state),
                            support_path=str(support), support_labels=list(support_labels))


def package_files(state: MetaLearnerState) -> tuple[dict[str, Path], dict]:
    """(package-relative path -> file to copy, the JSON block for tlops_model.json) of a meta-learned head."""
    meta = state.model_dump(exclude={"state_path", "support_path"}) | {"state_file": STATE_FILE, "support_file": SUPPORT_FILE}
    return {STATE_FILE: Path(state.state_path), SUPPORT_FILE: Path(state.support_path)}, meta


class FewShotAdapter:
    """The packaged encoder + adaptation rule: support features and class indices -> an adapted `ProbeHead`."""

    def __init__(self, root: Path, meta: dict):
        from tlops.training.meta import Encoder, MetaLearner

        self.meta = meta
        tensors = load_file(str(Path(root) / meta["state_file"]))
        part = {p: {k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(f"{p}.")} for p in ("encoder", "learner")}
        e = meta["encoder"]
        self.encoder = Encoder(e["in_dim"], e["kind"], e["hidden"], e["out_dim"], part["encoder"]["mean"], part["encoder"]["std"])
        self.encoder.load_state_dict(part["encoder"])
        self.learner = MetaLearner(self.encoder, meta["algorithm"], meta["inner_lr"], meta["inner_steps"], meta["anil"])
        self.learner.load_state_dict(part["learner"])  # strict: Meta-SGD's alphas must all be there, nothing else
        self.encoder.eval()
        self.support_file = Path(root) / meta["support_file"]

    def head(self, features: np.ndarray, targets: np.ndarray, n_classes: int) -> ProbeHead:
        from tlops.training.meta import adapted_head

        return adapted_head(self.learner, self.encoder, torch.from_numpy(np.asarray(features, dtype=np.float32)),
                            torch.as_tensor(targets, dtype=torch.long), n_classes)

    def registered_support(self) -> tuple[np.ndarray, np.ndarray]:
        """The features and class indices (into the package's labels) of the support set the registered head was adapted to."""
        t = load_file(str(self.support_file))
        return t["x"].numpy(), t["y"].numpy()
