"""What `decide` is made of: pure functions over one pass (`passes.Pass`), one module per policy."""
