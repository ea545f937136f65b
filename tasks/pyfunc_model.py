"""The MLflow pyfunc of a tlops model package: raw inputs in, labels out (or, with the param `proba`,
one column of class probabilities per label). A regression model returns floats in the target's units.

Few-shot serving: for a meta-transfer model the param `support` (a JSON string: a list of
{"text" | "path": ..., "label": ...} rows) adapts the meta-learned encoder to that support set on the spot,
and the predictions (and `proba`'s columns) are over its classes: new classes with no retraining and no new
version. Without it the model predicts its registered classes. A few-shot regressor's support rows carry target values
as their labels and adapt it to their task.

Inputs are checked before the model sees them: strings only (texts, or file paths for image and audio models), none
missing, empty or holding a NUL byte (the signature declares the input column `Any`, so MLflow's server hands a
request's values over as sent: a `string` column turned 1 and null into "1" and "None"); behind `mlflow models serve`,
at most `TLOPS_SERVE_MAX_ROWS` rows per request (default 10,000 for text models, 1,000 for image and audio models, which
decode a file per row; a support set counts too), a larger request refused before any row is read. Behind the server
every refusal (these, a bad support set, a file that does not decode) is `InvalidInput`, an MlflowException with
INVALID_PARAMETER_VALUE: MLflow answers 400 with its one line (no stack trace, no echo of the request). An unexpected
error is answered 500 with one line; its traceback goes to the server's log, not to the client. In-process (`tlops
predict`, `load_model(...).predict`) refusals are tlops DataErrors (InvalidInput is one too), printed by `tlops predict`
as one `error:` line; the row bound does not apply there. A text model trained with `validation.control_characters: strip`
strips the same control characters from its inputs (and support rows) before embedding them: the package records the rule
(`tlops.package.Predictor`), so serving sees the text as training did.

Logged as "models from code" (no pickle): MLflow copies this file into the model and runs it at
load time; it imports only mlflow and tlops (shipped with the model through code_paths). `predict` has
no type hints on purpose: the explicit signature (with its `proba` and `support` params) is then the one
MLflow uses, for `load_model(...).predict(x, params={"proba": True})` and for `mlflow models serve` alike.
"""

from __future__ import annotations

import logging
import math
import os

import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

from tlops.errors import ConfigError, DataError, TlopsError

MAX_ROWS_ENV = "TLOPS_SERVE_MAX_ROWS"  # rows per request behind `mlflow models serve`
DEFAULT_MAX_ROWS = {"text": 10_000, "image": 1_000, "audio": 1_000}
# MLflow's scoring server marks its process as serving (mlflow.pyfunc.scoring_server.init); `tlops predict` and
# `tlops evaluate` call the model in their own process, on files the user chose, and are not bounded.
SERVING_ENV = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"


class OneLine(MlflowException):
    """An MlflowException whose message stays the line it was raised with: MLflow's scoring server rewrites the message
    of an MlflowException from the model as "Failed to predict data '<the request's data>'. \\nError: ...", which
    echoes the whole request back (megabytes for a request over the row bound) on two lines."""

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):  # set once, by MlflowException.__init__
            self._message = value


class InvalidInput(OneLine, DataError):
    """Input the model refuses: 400 (INVALID_PARAMETER_VALUE) with this one line from `mlflow models serve`, no stack
    trace; an `error:` line from `tlops predict`."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def max_rows(modality: str) -> int:
    """Rows per request the server takes: `TLOPS_SERVE_MAX_ROWS`, else the modality's default."""
    raw = os.environ.get(MAX_ROWS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_ROWS.get(modality, DEFAULT_MAX_ROWS["text"])
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_ROWS_ENV}={raw[:40]!r} is not a whole number of rows >= 1; set it to the most rows one request "
                          f"may carry (e.g. {MAX_ROWS_ENV}=10000), or unset it for the default")
    return int(raw)


def serving() -> bool:
    return os.environ.get(SERVING_ENV, "").strip().lower() in ("true", "1")


def _short(x) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _rows(model_input) -> list:
    """The raw values of a request, as MLflow hands them over (a DataFrame after its schema enforcement, or a list,
    Series, array or one string in-process): a DataFrame's `text` or `path` column, else its only column."""
    import numpy as np
    import pandas as pd

    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.DataFrame):
        cols = list(model_input.columns)
        named = [c for c in ("text", "path") if c in cols]
        if not named and len(cols) != 1:
            raise InvalidInput(f"input has {len(cols)} columns ({', '.join(_short(c) for c in cols[:5])}); send one column of "
                               'inputs, e.g. {"inputs": ["..."]}, or name it "text" (text models) or "path" (image/audio models)')
        return model_input[named[0] if named else cols[0]].tolist()
    if isinstance(model_input, np.ndarray) and model_input.ndim > 1:
        raise InvalidInput(f"input is a {model_input.ndim}-dimensional array; send a flat list of inputs, e.g. "
                           '{"inputs": ["..."]}')
    if isinstance(model_input, (pd.Series, np.ndarray)):
        return model_input.tolist()
    if isinstance(model_input, (list, tuple)):
        return list(model_input)
    raise InvalidInput(f"input is a {type(model_input).__name__}; send a list of inputs, e.g. " '{"inputs": ["..."]}')


def _too_many(n: int, limit: int) -> InvalidInput:
    return InvalidInput(f"the request has {n} rows, more than the {limit} this server takes per request ({MAX_ROWS_ENV}); "
                        f"send at most {limit} rows per request")


def checked_rows(model_input, modality: str, limit: int | None) -> list[str]:
    """The request's rows as strings, or an error naming the first bad row (counted from 1) and the fix: InvalidInput for
    what is not a string, a DataError (the wording `tlops predict` and training use) for a missing, empty or NUL value.
    `limit`: the most rows taken (None: any number); a larger request is refused before any row is looked at."""
    from tlops.support_set import check_value

    if limit is not None and not isinstance(model_input, str) and hasattr(model_input, "__len__") and len(model_input) > limit:
        raise _too_many(len(model_input), limit)
    rows = _rows(model_input)
    if limit is not None and len(rows) > limit:
        raise _too_many(len(rows), limit)
    what = "texts" if modality == "text" else f"{modality} file paths readable by the server"
    for i, x in enumerate(rows, start=1):
        missing = x is None or (isinstance(x, float) and math.isnan(x))  # None / NaN: a missing cell, said so by check_value
        if not missing and not isinstance(x, str):
            raise InvalidInput(f"input row {i} is {_short(x)} (type {type(x).__name__}), not a string; this {modality} model takes "
                               f'{what} as JSON strings, e.g. {{"inputs": ["..."]}}')
        check_value(x, f"input row {i}")
    return rows


def checked_records(model_input, columns: tuple[str, ...], limit: int | None) -> list[dict]:
    """The request's rows as {column: string} records for a model whose input row has named fields (`columns`): a
    DataFrame with those columns (what MLflow makes of a list of records under the model's signature), a list of
    mappings, or one mapping; an error naming the first bad row (counted from 1), its field and the fix."""
    import pandas as pd

    from tlops.support_set import check_value

    example = "{" + ", ".join(f'"{c}": "..."' for c in columns) + "}"
    if limit is not None and hasattr(model_input, "__len__") and not isinstance(model_input, (str, dict)) and len(model_input) > limit:
        raise _too_many(len(model_input), limit)
    if isinstance(model_input, dict):
        model_input = [model_input]
    if isinstance(model_input, pd.DataFrame):
        missing = [c for c in columns if c not in model_input.columns]
        if missing:
            raise InvalidInput(f"input has columns {', '.join(_short(c) for c in list(model_input.columns)[:5])}, not "
                               f"{', '.join(missing)}; send rows such as {{\"dataframe_records\": [{example}]}}")
        model_input = model_input[list(columns)].to_dict("records")
    if not isinstance(model_input, (list, tuple)):
        raise InvalidInput(f"input is a {type(model_input).__name__}; send a list of rows such as [{example}]")
    rows = []
    for i, r in enumerate(model_input, start=1):
        if not isinstance(r, dict):
            raise InvalidInput(f"input row {i} is {_short(r)} (type {type(r).__name__}); send rows such as {example}")
        for c in columns:
            x = r.get(c)
            if not (x is None or (isinstance(x, float) and math.isnan(x)) or isinstance(x, str)):
                raise InvalidInput(f"input row {i} {c} is {_short(x)} (type {type(x).__name__}), not a string; send rows such as {example}")
            check_value(x, f"input row {i} {c}")
        rows.append({c: r[c] for c in columns})
    return rows


class TlopsModel(mlflow.pyfunc.PythonModel):
    # The untyped `predict` is deliberate (see above). Without this MLflow wraps it in a pass-through and prints
    # advice about type hints at every load and log, through a warnings filter of its own that no caller's
    # filter can silence.
    _skip_type_hint_validation = True

    def load_context(self, context):
        from tlops.package import Predictor

        self.predictor = Predictor(context.artifacts["package"])
        max_rows(self.predictor.modality)  # a bad TLOPS_SERVE_MAX_ROWS stops the server at start, not at its first request

    def predict(self, context, model_input, params=None):
        if not serving():
            return self._predict(model_input, params or {}, None)
        try:
            return self._predict(model_input, params or {}, max_rows(self.predictor.modality))
        except MlflowException:
            raise
        except TlopsError as e:  # a bad support set, an undecodable file, proba of a regression model: the client's to fix
            raise InvalidInput(str(e)) from None
        except Exception as e:  # ours to fix: the traceback goes to the server's log, not to the client
            logging.getLogger("tlops.serving").exception("prediction failed")
            raise OneLine(f"prediction failed ({type(e).__name__}); the server's log has the details", error_code=INTERNAL_ERROR) from None

    def _predict(self, model_input, params: dict, limit: int | None):
        from tlops.task_types import task_type

        columns = task_type(self.predictor.task).input_columns  # a row of named fields (extractive QA: question, context)
        items = checked_records(model_input, columns, limit) if columns else checked_rows(model_input, self.predictor.modality, limit)
        # "" is the signature's default (MLflow params need one): no support set, the registered classes
        support = self.predictor.support(params["support"]) if params.get("support") else None
        if support is not None and limit is not None and len(support.inputs) > limit:
            raise InvalidInput(f"the support set has {len(support.inputs)} rows, more than the {limit} this server takes per "
                               f"request ({MAX_ROWS_ENV}); send a smaller support set")
        own = task_type(self.predictor.task).predict_with(self.predictor, items, params) if support is None else None
        if own is not None:  # a task type's own param (speech recognition: per-word timings)
            return own
        if params.get("proba"):
            import pandas as pd

            return pd.DataFrame(self.predictor.predict_proba(items, support), columns=self.predictor.classes(support))
        return self.predictor.predict(items, support)


set_model(TlopsModel())
