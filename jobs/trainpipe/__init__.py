"""trainpipe: target ranking → feature selection → routing & plan → CPU then GPU training."""

from trainpipe.memory import configure as _configure_memory

__version__ = "0.1.0"

_configure_memory()  # before CatBoost or pyarrow load their allocator (see trainpipe.memory)
