"""Wiring of stages to files: read inputs, call the pure stage, write artefacts, record what was done."""
