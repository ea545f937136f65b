"""The MLflow pyfunc of a tlops model package: raw inputs in, labels out (or, with the param `proba`,
one column of class probabilities per label).

Logged as "models from code" (no pickle): MLflow copies this file into the model and runs it at
load time; it imports only mlflow and tlops (shipped with the model through code_paths). `predict` has
no type hints on purpose: the explicit signature (with its `proba` param) is then the one MLflow uses,
for `load_model(...).predict(x, params={"proba": True})` and for `mlflow models serve` alike.
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

        items = as_items(model_input)
        if (params or {}).get("proba"):
            import pandas as pd

            return pd.DataFrame(self.predictor.predict_proba(items), columns=self.predictor.labels)
        return self.predictor.predict(items)


set_model(TlopsModel())
