"""The training stages; `trainpipe train`, the local runner and the benchmarks (trainpipe_bench) import from the submodules.

    settings.TrainingSettings(data_dir, interval=…, holdout_fraction=…, families=…, params=…, on_progress=…, reuse=…)
    stage.run_training_stage(plan, 'cpu'|'gpu', layout, settings, family=None) -> StageResult
    stage.run_training_unit(plan, 'cpu'|'gpu', family, index, layout, settings, *, plan_path, force=False) -> (WorkUnit, UnitRecord)
    stage.run_training(plan, layout, settings) -> {'cpu': StageResult, 'gpu': StageResult}
    metrics_file.read_all_metrics(layout) -> list[ModelMetrics]

The package itself imports nothing, so `import trainpipe.training.units` stays light. Training sits above
the model families: families never import it (the import-linter layers enforce it).
"""
