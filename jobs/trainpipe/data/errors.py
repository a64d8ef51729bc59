"""The one error the data layer raises; the loader, the example builder and every stage CLI catch it."""

from __future__ import annotations

from trainpipe.contract.exitcodes import CommandFailure, ExitCode


class DataError(ValueError, CommandFailure):
    """Input data that cannot be used.

    The message names the file (and the column, symbol or timestamp when there is one), says what was
    wrong and what to do next, so a CLI can print it as-is and exit non-zero.
    """

    exit_code = ExitCode.BAD_DATA
