"""Which exit code each known failure of a stage command gets; the operator's podFailurePolicy acts on them. Called by `cli.main`.

The codes are `trainpipe.contract.exitcodes.ExitCode`: 2–9 mean the same command fails again on the same
inputs (the Job fails at once), 1 means the unit's own work failed (retried). An error not in the table
is a bug: it keeps its traceback and exits 1.
"""

from __future__ import annotations

import errno

from trainpipe.contract.exitcodes import CommandFailure, ExitCode


class UsageError(ValueError, CommandFailure):
    """Command-line arguments argparse refused (unknown flag, bad value); the message is argparse's."""

    exit_code = ExitCode.INVALID_SPEC


class VolumeFullError(RuntimeError, CommandFailure):
    exit_code = ExitCode.NO_SPACE


def known_failure(exc: BaseException) -> BaseException:
    """`exc`, or the known failure it stands for: a write the filesystem refused for want of space names the
    file and what to do (the atomic writers removed their temp, so nothing half-written is left)."""
    if isinstance(exc, OSError) and not isinstance(exc, CommandFailure) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        where = f" writing {exc.filename}" if exc.filename else ""
        return VolumeFullError(f"{what} on the volume{where}: free space there (fewer run folders: lower spec.keepRuns) "
                                          "or enlarge the claim, then retry (trainpipe.io/retry)")
    return exc


def exit_code_for(exc: BaseException) -> ExitCode | None:
    """The exit code of a known failure (each carries its own, `CommandFailure.exit_code`), or None for an unexpected one (a bug)."""
    return exc.exit_code if isinstance(exc, CommandFailure) else None


# For `trainpipe --help`: one line per code, the meaning each failure's exit_code stands for.
EPILOG_TABLE = """\
exit codes (what the operator's podFailurePolicy reads; 2-9 are permanent, 1 and 143 are retried):
  0  OK             the stage or unit is done (or was already done, or was copied from another run)
  1  UNIT_FAILED    the work itself failed: a model raised, a worker died (retry the same command)
  2  INVALID_SPEC   bad flags, -f manifest or --spec-json; unknown family; a family of the other --stage;
                    targets.include/features.include naming columns the data does not have
  3  BAD_DATA       a data file is missing, unreadable or malformed (the message names file and column)
  4  MISSING_INPUT  an upstream stage's artefacts are missing or from other inputs; a --unit-index or
                    --target the ranking or plan on the volume does not have
  5  GATE_CLOSED    a gpu stage or unit while cpu units of the plan are not done
  6  STALE_PLAN     the plan on the volume has another --run-id or --plan-digest than this call's
  7  EMPTY_PLAN     routing left nothing to train and training.allowEmptyPlan is false
  8  NO_SPACE       the volume is full or over quota (the message names the file); earlier outputs are intact
  9  FOLDER_OWNED   the pipeline folder on the artifacts volume belongs to another pipeline (its
                    .trainpipe/owner.json names it): nothing was written or pruned there
  143  TERMINATED   SIGTERM (the pod was deleted or evicted): temp files removed, finished units kept
"""
