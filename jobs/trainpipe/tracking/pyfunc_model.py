"""The registry's model of a trainpipe unit, as MLflow runs it: the unit's own folder (preprocessing + model) behind `predict`.

A "model from code" file: `trainpipe.tracking.mlflow_log` logs this file with the unit's folder as the
artifact `trainpipe_model`, and MLflow executes it when the model is loaded
(`mlflow.pyfunc.load_model("models:/<name>@champion")`), so what the registry serves predicts exactly what
the holdout metrics in metrics.json measured: the same feature order, imputation, scaling and model.
Loading needs trainpipe (and the family's library) installed. Never imported by trainpipe itself.
"""

from pathlib import Path

import mlflow
from mlflow.pyfunc import PythonModel


class TrainpipeModel(PythonModel):
    """`predict(frame)`: the job's features picked by name from `frame` (sequence families also need ts and symbol), one value per row."""

    def load_context(self, context):
        from trainpipe.families.registry import load_model

        self.model = load_model(Path(context.artifacts["trainpipe_model"]))

    def predict(self, context, model_input, params=None):
        return self.model.predict(model_input)


mlflow.models.set_model(TrainpipeModel())
