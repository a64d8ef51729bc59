"""How `make install` installs the project and its two helper packages editable, without setuptools' notices."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"trainpipe", "trainpipe_operator", "trainpipe_localcluster", "trainpipe_bench"}


def test_no_folder_at_the_repository_root_is_named_like_a_package() -> None:
    """The project's editable install is a meta path finder (two package roots, jobs/ and operator/): a folder
    named like a package in the working directory would win over it on import. `make install` silences
    setuptools' notice about that because none is."""
    assert not {p.name for p in ROOT.iterdir()} & PACKAGES


@pytest.mark.parametrize("project", ["localcluster", "bench"])
def test_flat_helper_packages_install_editable_as_a_path(project: str) -> None:
    """package-dir "" = "." makes setuptools' editable install one .pth line naming the folder, with no notice."""
    config = tomllib.loads((ROOT / project / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["package-dir"] == {"": "."}
    assert "license" not in config["project"] or isinstance(config["project"]["license"], str), "an SPDX string, not a table"
