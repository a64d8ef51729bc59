"""Thread counts follow the CPUs a container may use: TRAINPIPE_CPUS (the pod's CPU limit), else the machine, capped by affinity."""

from __future__ import annotations

import os

import pytest

from trainpipe.resources import CPUS_ENV, CpuSettingError, available_cpus, cpus_from


@pytest.mark.parametrize(
    ("env", "cpu_count", "affinity", "expected"),
    [
        (None, 64, None, 64),  # no limit given: the machine
        ("2", 64, None, 2),  # the pod's CPU limit, not the node's cores
        ("2", 64, 64, 2),
        (" 3 ", 64, None, 3),
        ("8", 64, 4, 4),  # pinned to 4 cores: more threads only contend
        (None, 64, 16, 16),
        ("0", 64, None, 64),  # a zero limit means "no share", not "no CPUs"
        ("-1", 8, None, 8),
        ("", 8, None, 8),
        (None, None, None, 1),  # os.cpu_count() may be None
        ("4", None, None, 4),
    ],
)
def test_cpus_from(env, cpu_count, affinity, expected) -> None:
    assert cpus_from(env, cpu_count, affinity) == expected


@pytest.mark.parametrize("env", ["two", "1.5", "2000m"])
def test_a_value_that_is_not_a_whole_number_is_an_error_naming_the_variable(env) -> None:
    with pytest.raises(CpuSettingError, match=f"{CPUS_ENV}=.*whole number"):
        cpus_from(env, 8, None)


def test_available_cpus_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(CPUS_ENV, "1")
    assert available_cpus() == 1
    monkeypatch.delenv(CPUS_ENV)
    machine = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert available_cpus() == machine


def test_thread_defaults_follow_the_limit(monkeypatch) -> None:
    from trainpipe.runner.steps import default_threads
    from trainpipe.training.units import thread_env

    monkeypatch.setenv(CPUS_ENV, "1")
    assert default_threads() == 1
    assert thread_env("lightgbm", available_cpus())["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv(CPUS_ENV, "64")
    assert default_threads() == min(4, available_cpus())  # rank/select stop at 4 threads
