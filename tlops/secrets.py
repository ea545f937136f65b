"""Credentials in URIs (`http://user:password@host`, `postgresql://user:password@host/db`): kept out of
everything tlops logs, stores or prints.

`mask` hides the password in any text; `split_credentials` takes it out of a URI so it can travel in
the environment instead (`MLFLOW_TRACKING_PASSWORD` for an MLflow server, `PGPASSWORD` for PostgreSQL),
where neither the config, nor MLflow params, nor Prefect parameters ever see it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# scheme://user:password@  (user may be empty; the password runs up to the last '@' before the host)
_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s'\"]*):(?P<password>[^/\s'\"]+)@")


def mask(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def mask_obj(obj: Any) -> Any:
    """Every string in a nested dict/list/tuple, masked."""
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, dict):
        return {k: mask_obj(v) for k, v in obj.items()}
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
