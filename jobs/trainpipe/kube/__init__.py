"""The one Kubernetes client (`client`) and pod parser (`pods`) of the operator, `trainpipe status`/`logs` and the benchmarks.

Empty on purpose: `pods` is pure and imported by the operator's `decide` side, which must not pull in
the Kubernetes client that `client` imports.
"""
