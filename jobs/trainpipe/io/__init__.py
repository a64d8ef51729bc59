"""The I/O edge: every path of the output layout, atomic writes, and typed reads of artefacts."""
