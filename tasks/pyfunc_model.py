"""The MLflow pyfunc of a tlops model package: raw inputs in, labels out (or, with the param `proba`,
one column of class probabilities per label). A regression model returns floats in the target's units.

Few-shot serving: for a meta-transfer model the param `support` (a JSON string: a list of
{"text" | "path": ..., "label": ...} rows) adapts the meta-learned encoder to that support set on the spot,
and the predictions (and `proba`'s columns) are over its classes: new classes with no retraining and no new
version. Without it the model predicts its registered classes. A few-shot regressor's support rows carry target values
as their labels and adapt it to their task.

Logged as "models from code" (no pickle): MLflow copies this file into the model and runs it at
load time; it imports only mlflow and tlops (shipped with the model through code_paths). `predict` has
no type hints on purpose: the explicit signature (with its `proba` and `support` params) is then the one
MLflow uses, for `load_model(...).predict(x, params={"proba": True})` and for `mlflow models serve` alike.
"""

from __future__ import annotations

import mlflow.pyfunc
from mlflow.models import set_model


class TlopsModel(mlflow.pyfunc.PythonModel):
    # The untyped `predict` is deliberate (see above). Without this MLflow wraps it in a pass-through and prints
    # advice about type hints at every load and log, through a warnings filter of its own that no caller's
    # filter can silence.
    _skip_type_hint_validation = True

    def load_context(self, context):
        from tlops.package import Predictor

        self.predictor = Predictor(context.artifacts["package"])

    def predict(self, context, model_input, params=None):
        from tlops.package import as_items

        params = params or {}
        items = as_items(model_input)
        # "" is the signature's default (MLflow params need one): no support set, the registered classes
        support = self.predictor.support(params["support"]) if params.get("support") else None
        if params.get("proba"):
            import pandas as pd

            return pd.DataFrame(self.predictor.predict_proba(items, support), columns=self.predictor.classes(support))
        return self.predictor.predict(items, support)


set_model(TlopsModel())
