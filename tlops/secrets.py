"""Secrets kept out of everything tlops logs, stores or prints (MLflow params, tags, artifacts, Prefect
parameters and logs, terminal output):

- credentials in URIs (`http://user:password@host`, `postgresql://user:password@host/db`);
- the values of environment variables named like secrets (`*_TOKEN`, `*PASSWORD`, `*_SECRET*`, `*_API_KEY`,
  `*_AUTH_STRING`, ...: `is_secret_name`), wherever such a value shows up in a text;
- config values marked secret: fields typed `pydantic.SecretStr` (pydantic's own repr and JSON dump hide them
  too, so they never cross a process boundary as Prefect parameters), and any value under a key named like a
  secret in a nested dict.

`mask` hides the password in any text; `split_credentials` takes it out of a URI so it can travel in
the environment instead (`MLFLOW_TRACKING_PASSWORD` for an MLflow server, `PGPASSWORD` for PostgreSQL),
where neither the config, nor MLflow params, nor Prefect parameters ever see it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_LEN = 6  # shorter environment values ("1", "true") are flags, not secrets, and would mask common words
_SECRET_NAME = re.compile(
    r"(^|_)(TOKEN|SECRET|SECRETS|PASSWD|CREDENTIALS?|AUTH_STRING)(_|$)|PASSWORD|(API|ACCESS|PRIVATE|SECRET|SIGNING|MASTER)_?KEY",
    re.IGNORECASE)
# scheme://user:password@  (user may be empty; the password runs up to the last '@' before the host)
_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s'\"]*):(?P<password>[^/\s'\"]+)@")


def is_secret_name(name: str) -> bool:
    """An environment variable or config key whose value is a secret: HF_TOKEN, PGPASSWORD, api_key,
    MLFLOW_FLASK_SERVER_SECRET_KEY, PREFECT_API_AUTH_STRING (not TOKENIZERS_PARALLELISM, not tokenizer_sha256)."""
    return bool(_SECRET_NAME.search(name))


def secret_env_values() -> list[str]:
    """This process's secret environment values, longest first (so a value containing another is masked whole)."""
    import os

    values = {v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def mask(text: str) -> str:
    """`text` with the password of every URI in it, and every secret environment value, replaced by ***."""
    text = _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    for value in secret_env_values():
        text = text.replace(value, MASK)
    return text


def mask_obj(obj: Any) -> Any:
    """Every string in a nested dict/list/tuple masked; `SecretStr` values and values under keys named like
    secrets (`is_secret_name`) replaced whole."""
    from pydantic import SecretBytes, SecretStr

    if isinstance(obj, (SecretStr, SecretBytes)):
        return MASK
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, dict):
        return {k: MASK if isinstance(k, str) and is_secret_name(k) and v not in (None, "") else mask_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(mask_obj(v) for v in obj)
    return obj


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without its password, user, password); a URI without a password comes back unchanged."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri, parts.username, None
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = unquote(parts.username) if parts.username else None
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), user, unquote(parts.password)


def credential_env(uri: str) -> tuple[str, dict[str, str]]:
    """(the URI to use and store, the environment that carries its credentials instead)."""
    clean, user, password = split_credentials(uri)
    if password is None:
        return uri, {}
    scheme = urlsplit(uri).scheme
    if scheme.startswith("postgres"):
        return clean, {"PGPASSWORD": password}  # libpq (psycopg2) reads it
    # MLflow's REST client sends these as HTTP basic auth; the user stays out of the URI too
    clean_no_user = urlunsplit(urlsplit(clean)._replace(netloc=urlsplit(clean).netloc.split("@")[-1]))
    return clean_no_user, {"MLFLOW_TRACKING_USERNAME": user or "", "MLFLOW_TRACKING_PASSWORD": password}


def adopt_credentials(uri: str) -> str:
    """The URI without its password; the password moves into this process's environment (see
    `credential_env`), so no param, artifact, Prefect parameter or output holds it."""
    import os

    clean, env = credential_env(uri)
    os.environ.update(env)
    return clean
