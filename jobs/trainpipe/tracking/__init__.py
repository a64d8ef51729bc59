"""MLflow tracking of a finished run folder: the pure choices (`choices`), the MLflow adapter (`mlflow_log`), the registry's pyfunc model (`pyfunc_model`)."""
