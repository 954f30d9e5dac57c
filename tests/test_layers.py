"""The import graph keeps the stage order: every module under common/, search/ and eval/ is parsed with `ast` (nothing
is imported or run) and each import is checked against the stages below.

Stages, lowest first; a module may import its own package and any lower stage, nothing at its own stage or above:

    0  ground floor   common/*.py (config, runs, device, memory, stats, figures, child, failures) and common/__init__
    1  data, arch     common/data/, common/arch/ (these two never import each other)
    2  contrastive    contrastive/ in common (a folder being added)
    3  search, labeled  common/search/, common/labeled/ (these two never import each other)
    4  study          common/study/
    5  scripts        search/*.py, eval/*.py: each script is a package of its own, so no script imports another

Every import counts, also one inside a function: a deferred import is still a dependency. `from package import name`
counts as an import of package.name when that is a module (`from common import figures` is the ground floor's
figures), else of the package. A sub-package of common/ missing from STAGES fails the test, so a new stage is placed
in the order before it can be imported.
"""
import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"ground": 0, "data": 1, "arch": 1, "contrastive": 2, "search": 3, "labeled": 3, "study": 4, "script": 5}
SCRIPT_DIRS = ("search", "eval")


def _module_name(path, root):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name, root):
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def script_names(root):
    return {p.stem for d in SCRIPT_DIRS for p in (root / d).glob("*.py")}


def place(module, root):
    """(stage, package) of a module name: package is what a module may always import from (its own stage folder, the
    ground floor, or for a script the script itself); None for a module outside the project (stdlib, torch...)."""
    parts = module.split(".")
    if parts[0] in script_names(root) and not _is_module(parts[0], root):
        return STAGES["script"], "script " + parts[0]
    if parts[0] != "common":
        return None
    if len(parts) == 1 or (root / "common" / f"{parts[1]}.py").is_file():
        return STAGES["ground"], "ground"
    if parts[1] not in STAGES:
        raise AssertionError(f"common/{parts[1]}/ is not in test_layers.STAGES: place the new stage in the order")
    return STAGES[parts[1]], parts[1]


def imports(path, module, root):
    """(line, imported module name) for every import statement in the file, deferred ones included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this file's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub, root) else base))
    return sorted(set(found))


def project_files(root):
    files = sorted((root / "common").rglob("*.py"))
    return files + sorted(p for d in SCRIPT_DIRS for p in (root / d).glob("*.py"))


def violations(root):
    """Every import that goes sideways or upward, as 'file:line: importer (stage) -> imported (stage)'."""
    found = []
    for path in project_files(root):
        rel = path.relative_to(root)
        module = _module_name(path, root) if rel.parts[0] == "common" else path.stem
        src = place(module, root)
        for line, target in imports(path, module, root):
            dst = place(target, root)
            if dst is None or dst[1] == src[1] or dst[0] < src[0]:
                continue
            found.append(f"{rel}:{line}: {module} ({src[1]}) -> {target} ({dst[1]})")
    return found


def import_cycle(root):
    """One cycle of project modules importing each other (deferred imports included), or None."""
    graph = {}
    for path in project_files(root):
        module = _module_name(path, root) if path.relative_to(root).parts[0] == "common" else path.stem
        graph[module] = {t for _, t in imports(path, module, root) if place(t, root) is not None and t != module}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        return err.args[1]
    return None


def test_imports_go_only_down_the_stage_order():
    found = violations(ROOT)
    assert not found, f"{len(found)} import(s) against the stage order:\n" + "\n".join(found)


def test_no_module_imports_itself_through_others():
    """Inside one package the stage rule allows any import; a cycle there is still refused."""
    assert import_cycle(ROOT) is None, " -> ".join(import_cycle(ROOT))


def test_every_stage_folder_of_common_is_placed_in_the_order():
    for folder in sorted(p for p in (ROOT / "common").iterdir() if (p / "__init__.py").is_file()):
        assert folder.name in STAGES, f"common/{folder.name}/ has no stage in test_layers.STAGES"


def _write(root, rel, text=""):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("rel, source, bad", [
    ("common/runs.py", "from common.data import images\n", True),  # ground floor -> stage package
    ("common/data/images.py", "import common.arch.networks\n", True),  # sibling of the same stage
    ("common/search/trial.py", "def f():\n    from common.labeled import model\n", True),  # deferred, sideways
    ("common/arch/networks.py", "from common.contrastive.bank import Bank\n", True),  # a stage above
    ("common/study/report.py", "from . import stats\nfrom ..search import trial\n", False),  # relative, own + lower
    ("search/search.py", "import train_isic\n", True),  # a script importing a script
    ("search/search.py", "from common import runs\nfrom common.study import report\nimport torch\n", False),
    ("common/labeled/model.py", "from common.contrastive import bank\nfrom common import figures\n", False),
])
def test_the_rule_reports_what_it_should(tmp_path, rel, source, bad):
    """A tiny tree with one importing file: upward, sideways, deferred and script-to-script imports are reported,
    downward, own-package and relative ones are not."""
    for f in ("common/__init__.py", "common/runs.py", "common/figures.py", "common/data/__init__.py",
              "common/data/images.py", "common/arch/__init__.py", "common/arch/networks.py",
              "common/contrastive/__init__.py", "common/contrastive/bank.py", "common/search/__init__.py",
              "common/search/trial.py", "common/labeled/__init__.py", "common/labeled/model.py",
              "common/study/__init__.py", "common/study/report.py", "common/study/stats.py",
              "search/search.py", "eval/train_isic.py"):
        _write(tmp_path, f)
    _write(tmp_path, rel, source)
    found = violations(tmp_path)
    assert bool(found) == bad, found
    assert all(f.startswith(rel + ":") for f in found)


def test_an_unplaced_stage_folder_is_refused(tmp_path):
    _write(tmp_path, "common/__init__.py")
    _write(tmp_path, "common/extras/__init__.py")
    _write(tmp_path, "common/runs.py", "def f():\n    from common.extras import thing\n")
    with pytest.raises(AssertionError, match="common/extras/"):
        violations(tmp_path)


def test_a_cycle_inside_a_package_is_found(tmp_path):
    _write(tmp_path, "common/__init__.py")
    _write(tmp_path, "common/labeled/__init__.py")
    _write(tmp_path, "common/labeled/model.py", "from common.labeled import run\n")
    _write(tmp_path, "common/labeled/run.py", "def f():\n    from common.labeled.model import build\n")
    assert import_cycle(tmp_path) is not None and not violations(tmp_path)
