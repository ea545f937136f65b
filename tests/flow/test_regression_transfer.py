"""One Prefect flow run per other modality for regression (the zoo's media models: image tilt of turned items,
audio speaking rate and voice pitch; tiny sets made by the demo builders' own code). tests/system/test_fresh_process.py
checks their registered pyfuncs return floats within the targets' bounds in a fresh process."""

from __future__ import annotations


def test_image_and_audio_regression_flows_register_models_gated_on_mae(zoo):
    for name, reg in zoo.media_regression.items():
        (r,) = reg.results
        assert r.version == "1" and "champion" in r.aliases and r.promotion.metric == "mae", (name, r)
        assert set(r.test_metrics) == {"mae", "rmse", "r2", "spearman"}, name
