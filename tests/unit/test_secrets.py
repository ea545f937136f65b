"""Credentials in URIs never reach a store or an output: a password planted in the tracking URI (by
`--set` and by $MLFLOW_TRACKING_URI) is searched for, after real runs against a real MLflow server and
a real Prefect server, in every file those servers and the runs wrote, and in everything printed."""

from __future__ import annotations

from tlops.secrets import credential_env, mask, mask_obj, split_credentials

TOKEN = "PLANTED-token-5c1e"  # the value of an environment variable named like a token


def test_mask_and_split():
    assert mask("http://alice:s3cr3t@host:5000/x and postgresql://bob:p%40ss@db/mlflow") == \
        "http://alice:***@host:5000/x and postgresql://bob:***@db/mlflow"
    assert mask("sqlite:///mlruns/mlflow.db http://host:5000") == "sqlite:///mlruns/mlflow.db http://host:5000"
    assert mask_obj({"a": ["https://u:p@h"], "b": 3}) == {"a": ["https://u:***@h"], "b": 3}
    assert split_credentials("postgresql://bob:p%40ss@db:5432/mlflow") == ("postgresql://bob@db:5432/mlflow", "bob", "p@ss")
    assert credential_env("http://alice:s3cr3t@host:5000") == ("http://host:5000", {"MLFLOW_TRACKING_USERNAME": "alice",
                                                                                    "MLFLOW_TRACKING_PASSWORD": "s3cr3t"})
    assert credential_env("postgresql://bob:pw@db/m") == ("postgresql://bob@db/m", {"PGPASSWORD": "pw"})
    assert credential_env("http://host:5000") == ("http://host:5000", {})


def test_secret_environment_values_and_secret_config_values_are_masked(monkeypatch):
    from pydantic import BaseModel, SecretStr

    from tests.helpers import REPO
    from tlops.config import load_config

    monkeypatch.setenv("TLOPS_TEST_API_TOKEN", TOKEN)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # named like a token, but not a secret: left alone
    assert mask(f"boom: header Bearer {TOKEN} refused; parallelism false") == "boom: header Bearer *** refused; parallelism false"

    class WithSecret(BaseModel):  # the mechanism for a config value marked secret: a SecretStr field
        endpoint: str
        api_token: SecretStr

    cfg = WithSecret(endpoint="https://u:p@h/x", api_token="PLANTED-cfg-9d0b")
    assert mask_obj(cfg.model_dump()) == {"endpoint": "https://u:***@h/x", "api_token": "***"}
    assert "PLANTED-cfg-9d0b" not in repr(cfg) + cfg.model_dump_json()  # pydantic's own repr and JSON hide it too
    assert mask_obj({"hf": {"token": "abc", "password": None}, "tokenizer_sha256": "ab12cd"}) == \
        {"hf": {"token": "***", "password": None}, "tokenizer_sha256": "ab12cd"}
    tree = load_config(REPO / "configs" / "text_linear_probe.yaml").model_dump()
    assert mask_obj(tree) == tree  # no false positive: no key of tlops' own config is named like a secret
