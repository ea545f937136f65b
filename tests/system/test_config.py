
from tlops.config import load_config


def test_every_demo_config_loads_and_fits_its_demo_dataset():
    """Each configs/*.yaml (the README's demo commands) loads, its data folder is a built demo set, and the config is
    one for that set's task (strategy, head and gate metric), as a run checks before training."""
    from pathlib import Path

    from tlops.data import load_dataset
    from tlops.task_types import check_config_fits

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert len(configs) >= 17, configs
    for f in configs:
        cfg = load_config(f)
        data = Path(cfg.data.path)
        assert (data / "dataset.yaml").is_file(), f"{f.name}: {data} is not built; run `make data`"  # every task type's set has one
        check_config_fits(cfg, load_dataset(data))
