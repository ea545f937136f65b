"""Security rules that need no server: the MLflow pin excludes the advisories, model folders that
would run remote code or unpickle a checkpoint are refused, a tampered package is refused before
MLflow loads (runs) it."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
# MLflow servers below this have unauthenticated file-read / path-traversal advisories (CVE-2026-2614 < 3.10.0)
MLFLOW_FLOOR = Version("3.10.0")


def test_mlflow_pin_excludes_the_advisories_and_the_installed_one_is_above_it():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    req = next(Requirement(d) for d in deps if Requirement(d).name == "mlflow")
    below = Version(f"{MLFLOW_FLOOR.major}.{MLFLOW_FLOOR.minor - 1}.99")
    assert not req.specifier.contains(below), f"pyproject admits vulnerable mlflow {below}: {req}"
    assert req.specifier.contains(MLFLOW_FLOOR), f"pyproject excludes the fixed mlflow {MLFLOW_FLOOR}: {req}"
    installed = Version(version("mlflow"))
    assert installed >= MLFLOW_FLOOR, f"installed mlflow {installed} < {MLFLOW_FLOOR}: pip install -U 'mlflow>={MLFLOW_FLOOR}'"


def _tiny_folder(tmp_path: Path) -> Path:
    from tests.helpers import make_tiny_bert

    return make_tiny_bert(tmp_path / "model")


def test_a_pickle_checkpoint_is_refused_with_the_file_and_the_fix(tmp_path):
    import pytest
    import torch

    from tlops.backbones import load_backbone
    from tlops.errors import BackboneError

    folder = _tiny_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(2, 2)}, folder / "pytorch_model.bin")
    with pytest.raises(BackboneError) as e:
        load_backbone(f"hf:{folder}")
    msg = str(e.value)
    assert f"{folder / 'pytorch_model.bin'} is a pickle checkpoint" in msg and "safe_serialization=True" in msg, msg


def test_a_model_folder_asking_for_remote_code_is_refused(tmp_path):
    import json

    import pytest

    from tlops.backbones import load_backbone
    from tlops.errors import BackboneError

    folder = _tiny_folder(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "auto_map": {"AutoModel": "modeling_evil.EvilModel"}}))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")  # would end the test if imported
    with pytest.raises(BackboneError, match=r"config.json asks to run the model folder's own Python code .*trust_remote_code=False"):
        load_backbone(f"hf:{folder}")


def test_every_hf_loader_call_passes_trust_remote_code_false():
    """Defence in depth behind the auto_map refusal: no `from_pretrained` in the backbones without it."""
    import re

    for f in sorted((ROOT / "tlops" / "backbones").glob("*.py")):
        for call in re.findall(r"\.from_pretrained\(([^\n]*)\)", f.read_text()):
            assert "**SAFE" in call or "trust_remote_code=False" in call, f"{f.name}: from_pretrained({call}) without trust_remote_code=False"
