"""trainpipe: target ranking → feature selection → routing & plan → CPU then GPU training."""

__version__ = "0.1.0"
