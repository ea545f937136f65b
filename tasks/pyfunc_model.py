"""The MLflow pyfunc of a tlops model package: raw inputs in, labels out.

Logged as "models from code" (no pickle): MLflow copies this file into the model and runs it at
load time; it imports only mlflow and tlops (shipped with the model through code_paths).
"""

from __future__ import annotations

import mlflow.pyfunc
from mlflow.models import set_model


class TlopsModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from tlops.package import Predictor

        self.predictor = Predictor(context.artifacts["package"])

    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return self.predictor.predict([str(x) for x in model_input])


set_model(TlopsModel())
