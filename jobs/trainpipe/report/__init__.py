"""The run report (report.html): what was ranked, selected, planned and trained, with charts."""
