"""The training stages; `trainpipe train`, the local runner and the benchmarks (trainpipe_bench) import from the submodules.

    stage.run_training_stage(plan, 'cpu'|'gpu', layout, data_dir, *, interval, families, holdout_fraction,
                             embargo_bars, seed, on_progress=None, params=None, panel_loader=…, isolate=True) -> StageResult
    stage.run_training_unit(plan, 'cpu'|'gpu', family, index, layout, data_dir, *, plan_path, …, reuse=None) -> (WorkUnit, UnitRecord)
    stage.run_training(plan, layout, data_dir, **same keywords) -> {'cpu': StageResult, 'gpu': StageResult}
    metrics_file.read_all_metrics(layout) -> list[ModelMetrics]

The package itself imports nothing, so `import trainpipe.training.units` stays light. Training sits above
the model families: families never import it (the import-linter layers enforce it).
"""
