"""trainpipe's Kubernetes operator: one TrainingPipeline → rank, select, plan, CPU and GPU training, report as Jobs.

Shape: `observe` reads a pipeline's children into frozen snapshots, the pure `decide` returns what to
create, delete and write, `act` applies it, and `handlers` is the thin kopf adapter that wakes it up.
"""
