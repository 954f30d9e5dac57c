"""Packaging metadata agrees with itself: pyproject vs requirements.txt, one version everywhere, a valid CITATION.cff."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; 3.10 skips these checks

ROOT = Path(__file__).resolve().parents[1]
DEV_ONLY = {"pytest", "ruff"}  # in requirements.txt for tests and lint, in pyproject's `dev` extra


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements():
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _key(req):
    return (req.name.lower(), str(req.specifier), str(req.marker) if req.marker else "")


def test_pyproject_dependencies_are_requirements_txt():
    project = _pyproject()["project"]
    runtime = sorted(_key(r) for r in _requirements() if r.name not in DEV_ONLY)
    assert sorted(_key(Requirement(d)) for d in project["dependencies"]) == runtime
    dev = sorted(_key(Requirement(d)) for d in project["optional-dependencies"]["dev"])
    assert dev == sorted(_key(r) for r in _requirements() if r.name in DEV_ONLY)


def test_every_requirement_is_bounded_and_ruff_is_pinned():
    for req in _requirements():
        assert req.specifier, f"{req.name} has no version bound"
    ruff = [r for r in _requirements() if r.name == "ruff"]
    assert len(ruff) == 1 and str(ruff[0].specifier).startswith("==")  # lint results must not change under us


def test_hyperopt_is_pinned_to_the_version_the_tests_run():
    """common/search/tpe.py builds hyperopt's trial documents itself (internals that may change in any release): pinned."""
    from importlib.metadata import version

    hyperopt = [r for r in _requirements() if r.name == "hyperopt"]
    assert len(hyperopt) == 1 and str(hyperopt[0].specifier).startswith("==")
    assert hyperopt[0].specifier.contains(version("hyperopt"))


def test_one_version_in_pyproject_citation_and_changelog():
    version = _pyproject()["project"]["version"]
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version: {re.escape(version)}$", cff, re.M)
    assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", (ROOT / "CHANGELOG.md").read_text(), re.M)


def test_citation_cff_structure():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["message"] and cff["title"]
    assert cff["authors"] and cff["license"] == _pyproject()["project"]["license"]
    titles = {ref["title"]: ref for ref in cff["references"]}
    assert "DARTS: Differentiable Architecture Search" in titles
    assert "Contrastive Self-supervised Neural Architecture Search" in titles
    for ref in cff["references"]:
        assert ref["authors"] and all(a.get("family-names") for a in ref["authors"]) and ref["year"]


@pytest.mark.slow
def test_pip_install_installs_common_and_every_stage_folder(tmp_path):
    # a real (no-deps) install of what a fresh clone holds (the files git sees; a stale build/ here would leak in):
    # what a user gets from `pip install .` must hold every module the scripts import
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.splitlines()
    clone = tmp_path / "clone"
    for rel in listed:
        if (ROOT / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, clone / rel)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(tmp_path / "site"), str(clone)], check=True, capture_output=True, cwd=tmp_path)
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "common").rglob("*.py")}
    installed = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site" / "common").rglob("*.py")}
    assert on_disk == installed and "common/arch/genotypes.py" in installed
    for init in (ROOT / "common").glob("*/__init__.py"):  # each stage folder says what lives there
        assert len(init.read_text().strip()) > 40, init
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
