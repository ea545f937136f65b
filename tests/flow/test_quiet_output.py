"""Quiet and prompt output (issue 27 item 6): commands that load or download a model (predict, promote --if-better, audit)
show no third-party bars (MLflow's "Downloading artifacts", transformers' "Loading weights") unless `tlops -v`; `tlops -q`
leaves errors and the result only; `tlops run` says what it does before its seconds of imports. The bars are switched
back on before each command, as a fresh process starts: the command itself must silence them."""

from __future__ import annotations

import os

import pytest

from tests.cli import cli


BARS = ("Downloading artifacts", "Loading weights")
QUIETING = ("HF_HUB_DISABLE_PROGRESS_BARS", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_LOGGING_LEVEL")


@pytest.fixture
def bars_on(monkeypatch):
    """The bars as a fresh process has them (nothing set in the environment, the libraries' bars on)."""
    import huggingface_hub.utils
    import transformers.utils.logging

    def reset() -> dict:
        for k in QUIETING:  # a command before set them in this process's environment
            monkeypatch.delenv(k, raising=False)
        huggingface_hub.utils.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
        return {k: v for k, v in os.environ.items() if k not in QUIETING}

    yield reset
    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def test_loading_a_model_shows_no_bars_unless_verbose(zoo, tmp_path, bars_on, monkeypatch):
    from tlops.reproduce import NotReproducible

    def no_rerun(*a, **k):  # the re-run is a training in another process: its output never reaches the user
        raise NotReproducible("not re-run in this test")

    monkeypatch.setattr("tasks.audit.rerun", no_rerun)
    monkeypatch.setattr("tasks.audit.checkout", lambda *a, **k: __import__("contextlib").nullcontext(tmp_path))
    uri = zoo.text.copy_store(tmp_path)
    commands = {"predict": ("predict", zoo.text.model_uri(), "a dog barking at the river"),
                "promote --if-better": ("promote", "tiny-text", "1", "--reason", "weak", "--if-better"),  # rescored, refused
                "audit": ("audit", zoo.text.model_uri("1"), "--use-cache")}
    for what, args in commands.items():
        out = cli(*args, "--tracking-uri", uri, env=bars_on())
        assert "Traceback" not in out.stderr, out.stderr[-3000:]
        assert not [b for b in BARS if b in out.stderr + out.stdout], (what, out.stderr[-2000:])
    loud = cli("-v", *commands["predict"], "--tracking-uri", uri, env=bars_on())
    assert loud.returncode == 0 and all(b in loud.stderr for b in BARS), loud.stderr[-2000:]  # the bars this test looks for


def test_run_says_what_it_does_first_and_quiet_says_nothing(tmp_path, text_dataset, tiny_bert):
    import yaml

    from tests.helpers import tiny_config

    (text_dataset / "test.csv").write_text("text,label\n")  # a data error: the run ends after its checks
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path, text_dataset, tiny_bert)))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = cli("run", str(tmp_path / "c.yaml"), env=env)
    lines = out.stderr.splitlines()
    assert out.returncode == 1 and lines[0] == f"tlops run {tmp_path / 'c.yaml'}: checking the config and the data", lines
    assert lines[1].startswith("error:"), lines
    quiet = cli("-q", "run", str(tmp_path / "c.yaml"), env=env)
    assert quiet.returncode == 1 and quiet.stderr.startswith("error:"), quiet.stderr
    both = cli("-q", "-v", "run", str(tmp_path / "c.yaml"), env=env)
    assert both.returncode == 2 and "not both" in both.stderr
