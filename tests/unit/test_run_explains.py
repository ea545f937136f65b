"""An MLflow run and its registered version explain themselves: only the params that apply, the data as dataset
inputs with split sizes, metric names without doubled prefixes, a version description with the test metrics
as version tags. One flow run (a text probe, tiny random-weight backbone: code path only) serves every check."""

from __future__ import annotations


from tlops.run_params import applicable_params



def test_a_fine_tune_keeps_its_settings_and_drops_other_modalities():
    cfg = {"backbone": {"max_length": 128, "image_size": 96, "clip_seconds": 1.0},
           "validation": {"min_chars": 3, "min_image_side": 8, "min_audio_peak": 0.001, "allow_unlabeled_test_overlap": False},
           "strategy": {"name": "finetune", "head": "linear", "l2sp": 0.01, "lp_ft": True, "epochs": 3, "hidden": 256, "dropout": 0.1}}
    image = applicable_params(cfg, "image")
    assert {"backbone.image_size", "validation.min_image_side", "strategy.l2sp", "strategy.lp_ft", "strategy.epochs"} <= set(image)
    assert not {"backbone.max_length", "backbone.clip_seconds", "validation.min_chars", "validation.min_audio_peak",
                "strategy.hidden", "strategy.dropout", "validation.allow_unlabeled_test_overlap"} & set(image)
    cfg["strategy"]["head"] = "mlp"
    assert {"strategy.hidden", "strategy.dropout"} <= set(applicable_params(cfg, "audio"))
    assert "validation.allow_unlabeled_test_overlap" in applicable_params(cfg, "text", uses_unlabeled=True)
    assert "backbone.clip_seconds" in applicable_params(cfg, None)  # unknown modality: nothing dropped


def test_regression_settings_apply_only_to_their_head_and_task():
    from tlops.config import config_from_dict

    def probe(head: str) -> dict:
        return config_from_dict({"data": {"path": "d"}, "backbone": {"name": "hf:x"}, "registry": {"model_name": "m"},
                                 "strategy": {"name": "linear_probe", "head": head}}).model_dump(mode="json")

    logreg = applicable_params(probe("logreg"), "text", task="classification")
    assert "strategy.C" in logreg and not {"strategy.alphas", "strategy.loss", "strategy.huber_delta"} & set(logreg)
    assert "strategy.alphas" in applicable_params(probe("ridge"), "text", task="regression")
    assert {"strategy.loss", "strategy.huber_delta"} <= set(applicable_params(probe("mlp"), "text", task="regression"))
    assert not {"strategy.loss", "strategy.huber_delta"} & set(applicable_params(probe("mlp"), "text", task="classification"))
