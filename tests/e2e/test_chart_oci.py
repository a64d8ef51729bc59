"""The operator's chart as an OCI artifact: `make chart-push` packages it and pushes it to a registry, and helm
installs it from there: `helm template` of the oci:// reference renders what `helm install` would apply.

The registry is the pinned distribution registry the local cluster runs (hack/build-tools.sh registry),
started here on a free loopback port with its storage in the test's folder, so no cluster is needed. The
cluster tier installs the chart from the cluster's registry for real (docs/install.md, steps 1 and 2, run
by tests/cluster/test_install_docs.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "trainpipe"
DOC = ROOT / "docs" / "install.md"


def _versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / "hack" / "versions.env").read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def _tool(component: str, binary: str) -> Path:
    tools = Path(os.environ.get("TRAINPIPE_TOOLS", Path.home() / ".cache" / "trainpipe" / "tools"))
    path = tools / f"{component}-{_versions()[f'{component.upper()}_VERSION']}" / "bin" / binary
    if not path.exists():
        pytest.fail(f"{path} is missing: `make test-e2e` builds it (hack/build-tools.sh {component})", pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """host:port of a registry of our own on loopback (plain HTTP, as the local cluster's), stopped afterwards."""
    addr = f"127.0.0.1:{_free_port()}"
    config = tmp_path / "registry.yaml"
    template = (ROOT / "localcluster" / "config" / "registry.yaml.in").read_text()
    config.write_text(template.replace("@ADDR@", addr).replace("@DATA@", str(tmp_path / "registry-data")))
    log = (tmp_path / "registry.log").open("w")
    proc = subprocess.Popen([str(_tool("registry", "registry")), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{addr}/v2/", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert proc.poll() is None and time.monotonic() < deadline, f"the registry did not start:\n{(tmp_path / 'registry.log').read_text()}"
            time.sleep(0.1)
        yield addr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _run(argv: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, f"{' '.join(argv)} failed (rc {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_the_chart_pushed_to_an_oci_registry_installs_as_the_checkout_s(registry: str, tmp_path: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    helm = str(_tool("helm", "helm"))
    # helm's registry login, cache and repositories in the test's folder, never the user's.
    env = {**os.environ, **{f"HELM_{k}_HOME": str(tmp_path / f"helm-{k.lower()}") for k in ("CACHE", "CONFIG", "DATA")},
           "HELM_REGISTRY_CONFIG": str(tmp_path / "helm-registry.json")}
    dist = tmp_path / "dist"

    # 1. Package and push with the make target docs/install.md step 1 runs.
    out = _run(["make", "--no-print-directory", "chart-push", f"REGISTRY={registry}/trainpipe", f"DIST={dist}", f"HELM={helm}"], env)
    ref = f"oci://{registry}/trainpipe/charts/{chart['name']}"
    assert out.strip().splitlines()[-1] == ref
    packaged = dist / f"{chart['name']}-{chart['version']}.tgz"

    # 2. What the registry serves is that package, under the chart's name and version.
    oci = [ref, "--version", chart["version"], "--plain-http"]
    shown = yaml.safe_load(_run([helm, "show", "chart", *oci], env))
    assert (shown["name"], shown["version"], shown["appVersion"]) == (chart["name"], chart["version"], chart["appVersion"])
    pulled_dir = tmp_path / "pulled"
    pulled_dir.mkdir()
    _run([helm, "pull", *oci, "--destination", str(pulled_dir)], env)
    pulled = pulled_dir / packaged.name
    assert hashlib.sha256(pulled.read_bytes()).hexdigest() == hashlib.sha256(packaged.read_bytes()).hexdigest()

    # 3. Installing from the registry applies what installing from the checkout applies (docs/install.md step 2's values).
    values = tmp_path / "my-values.yaml"
    values.write_text(yaml.safe_dump({"global": {"imageRegistry": f"{registry}/trainpipe"}, "watchNamespaces": ["ml"],
                                      "exampleData": {"enabled": True}}))
    args = ["--namespace", "trainpipe-system", "--values", str(values)]
    from_registry = _run([helm, "template", "trainpipe", *oci, *args], env)
    from_checkout = _run([helm, "template", "trainpipe", str(CHART), *args], env)
    assert from_registry == from_checkout
    kinds = {d["kind"] for d in yaml.safe_load_all(from_registry) if d}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "Role", "RoleBinding", "Job"} <= kinds, kinds
    deployment = next(d for d in yaml.safe_load_all(from_registry) if d and d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{registry}/trainpipe/operator:{chart['appVersion']}"


def test_docs_name_the_chart_s_reference_and_version_and_the_package_s() -> None:
    """docs/install.md's step 2 is run only by the cluster tier, and other pages only mention these: keep every
    chart reference and version, and every pinned `trainpipe[...]==` install, in step with the chart and the package."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = re.search(r'^__version__ = "(.+)"$', (ROOT / "jobs" / "trainpipe" / "__init__.py").read_text(), re.M)
    assert package
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").rglob("*.md"))]
    charts = {(page.name, m) for page in pages for m in re.findall(r"oci://\S+/charts/([^\s`/]+) --version ([^\s`]+)", page.read_text())}
    wheels = {(page.name, m) for page in pages for m in re.findall(r"trainpipe\[[a-z,-]+\]==([^\s`']+)", page.read_text())}
    assert {name for name, _ in charts} >= {"install.md", "README.md"}, "docs/install.md and README.md say how to install the chart from a registry"
    assert {m for _, m in charts} == {(chart["name"], chart["version"])}, sorted(charts)
    assert {m for _, m in wheels} == {package.group(1)}, sorted(wheels)
