"""Stage functions: pure decisions over data, called by the thin CLI commands."""
