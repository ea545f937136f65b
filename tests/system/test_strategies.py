"""The strategy registry: the config's `strategy:` union and the pipeline's dispatch come from it, so a
new strategy is one new module and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


from tests.helpers import REPO, tiny_config


# A real (if simple) strategy written the way a contributor would: nearest class centroid on the cached
# features, expressed as a linear head (logit_c = 2 x.mu_c - |mu_c|^2), so package/evaluate/predict just work.
NEAREST_CENTROID = '''
from typing import Literal

from tlops.config_base import Strict
from tlops.records import HeadResult
from tlops.strategies.context import TrainContext
from tlops.strategies.registry import register_strategy


class NearestCentroidConfig(Strict):
    name: Literal["nearest_centroid"] = "nearest_centroid"
    shrink: float = 0.0


@register_strategy("nearest_centroid", NearestCentroidConfig)
def train(ctx: TrainContext) -> HeadResult:
    """Class means of the cached train features as a linear head."""
    import torch

    from tlops.modules.heads import ProbeHead

    x, y = ctx.features.arrays("train")
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    mu = torch.stack([x[y == c].mean(0) for c in range(len(ctx.features.labels))]) * (1 - ctx.cfg.strategy.shrink)
    head = ProbeHead(x.shape[1], len(ctx.features.labels))
    with torch.no_grad():
        head.net[0].weight.copy_(2 * mu)
        head.net[0].bias.copy_(-(mu ** 2).sum(1))
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    path = head.save(ctx.out_dir / "head.safetensors")
    return HeadResult(strategy="nearest_centroid", head_path=str(path), spec=head.spec, history=[{"epoch": 0}],
                      val_metrics={"macro_f1": 0.0}, seconds=0.0)
'''


DRIVER = '''
import json, sys
import tlops.strategies as strategies
strategies.__path__.append(sys.argv[1])  # the new module sits in a folder of its own, found like any strategy module
from tlops.config import config_from_dict
from tlops.errors import ConfigError
from tlops.pipeline import run_core
cfg = config_from_dict(json.loads(sys.argv[2]))
out = run_core(cfg, sys.argv[3])
try:
    config_from_dict({**json.loads(sys.argv[2]), "strategy": {"name": "nearest_centroid", "shrnk": 1}})
except ConfigError as e:
    bad_key = str(e)
print(json.dumps({"strategy": out.train.strategy, "metrics": out.evaluation.metrics, "package": out.package, "bad_key": bad_key}))
'''


def test_a_new_strategy_module_plugs_in_with_no_other_change(tmp_path, text_dataset, tiny_bert):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "nearest_centroid.py").write_text(textwrap.dedent(NEAREST_CENTROID))
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, strategy={"name": "nearest_centroid", "shrink": 0.0})
    out = subprocess.run([sys.executable, "-c", DRIVER, str(plugin), json.dumps(cfg), str(tmp_path / "work")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["strategy"] == "nearest_centroid"
    assert set(result["metrics"]) == {"accuracy", "macro_f1"} and 0.0 <= result["metrics"]["accuracy"] <= 1.0
    assert "strategy.shrnk: unknown key; valid keys here: name, shrink" in result["bad_key"], result["bad_key"]

    from tlops.package import Predictor

    assert len(Predictor(result["package"]).predict(["a small dog that barks at the moon"])) == 1
