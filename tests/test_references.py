"""What the comments, docstrings and documentation pages name exists: file paths, `common.*` modules and their names,
and the pages' links and anchors; and every page is one link away from README.md.

Read: the comments and docstrings (module, class, function) of every .py file under common/, search/, eval/, tests/
and images/, and every line of the pages (README.md, search/README.md, eval/README.md, docs/*.md). CHANGELOG.md is
history and may name files that were renamed since.

- A path that starts at one of those folders (`common/arch/genotypes.py`, `docs/study.md`) must exist when it names a
  file (it has a suffix). A folder path (`common/search/executors/`) must exist under common/, which holds only code;
  under the other folders it may be an output a script creates (`search/gpu_check_out/`) and is not checked.
- A dotted name `common.<module>...` must be a module, and what follows the longest module must be a name defined at that
  module's top level (`common.labeled.metrics.balanced_accuracy_from_csv`).
- A relative Markdown link or image must point at an existing file or folder, and its `#anchor` at a heading of the
  target page (GitHub's rule: lower case, punctuation but `-` and `_` dropped, spaces to `-`).
"""
import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("common", "search", "eval", "tests", "images", "docs")
PAGES = [ROOT / "README.md", ROOT / "search" / "README.md", ROOT / "eval" / "README.md",
         *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = sorted(p for d in ("common", "search", "eval", "tests", "images") for p in (ROOT / d).rglob("*.py"))
PATH = re.compile(r"(?<![\w/.~<>-])((?:" + "|".join(FOLDERS) + r")/[\w/.-]*)")
DOTTED = re.compile(r"(?<![\w.])(common(?:\.\w+)+)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(path):
    """(line, text) of each comment and docstring line of a .py file, or of each line of a page."""
    source = path.read_text()
    if path.suffix != ".py":
        return list(enumerate(source.splitlines(), 1))
    found = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found += [(first.lineno + i, line) for i, line in enumerate(first.value.value.splitlines())]
    return found


def missing_path(ref, root=ROOT):
    """The reason a path named in prose does not resolve, or None."""
    ref = ref.rstrip(".-")
    target = root / ref
    if Path(ref).suffix:
        return None if target.exists() else "no such file"
    if ref.startswith("common/") and not (target.is_dir() or target.with_suffix(".py").is_file()):
        return "no such folder"
    return None


def _module_file(name, root=ROOT):
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_level_names(path):
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def missing_module(dotted, root=ROOT):
    """The reason a dotted `common...` name does not resolve, or None."""
    parts = dotted.split(".")
    depth = max((i for i in range(1, len(parts) + 1) if _module_file(".".join(parts[:i]), root)), default=0)
    if depth == len(parts):
        return None
    module = ".".join(parts[:depth])
    if depth == 0 or parts[depth] not in top_level_names(_module_file(module, root)):
        return f"no module or name {parts[depth]!r} in {module or 'the project'}"
    return None


def slug(heading):
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page):
    seen, found = {}, set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#{1,6} (.+)", line)):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_link(page, link):
    """The reason a relative link of `page` does not resolve, or None (web links are not followed)."""
    if re.match(r"[a-z]+:", link):
        return None
    target, _, anchor = link.partition("#")
    path = (page.parent / target).resolve() if target else page
    if not path.exists():
        return "no such file"
    if anchor and path.suffix == ".md" and anchor not in anchors(path):
        return f"no heading #{anchor} in {path.relative_to(ROOT)}"
    return None


def problems(files):
    found = []
    for path in files:
        rel = path.relative_to(ROOT)
        lines = prose(path)
        for line, text in lines:
            for m in PATH.finditer(text):
                if why := missing_path(m.group(1)):
                    found.append(f"{rel}:{line}: {m.group(1)} ({why})")
            for m in DOTTED.finditer(text):
                if why := missing_module(m.group(1)):
                    found.append(f"{rel}:{line}: {m.group(1)} ({why})")
            if path.suffix == ".md":
                for m in LINK.finditer(text):
                    if why := broken_link(path, m.group(1)):
                        found.append(f"{rel}:{line}: link {m.group(1)} ({why})")
    return found


def test_pages_name_only_what_exists():
    found = problems(PAGES)
    assert not found, "\n".join(found)


def test_comments_and_docstrings_name_only_what_exists():
    found = problems(SOURCES)
    assert not found, "\n".join(found)


def test_every_page_is_linked_from_the_readme():
    readme = ROOT / "README.md"
    linked = {(readme.parent / m.group(1).partition("#")[0]).resolve() for m in LINK.finditer(readme.read_text())}
    assert not [p.relative_to(ROOT) for p in PAGES[1:] if p.resolve() not in linked]


@pytest.mark.parametrize("ref, bad", [
    ("common/arch/genotypes.py", False), ("common/search/executors/", False), ("common/search/executors.py", True),
    ("common/tpe.py", True), ("common/nowhere/", True), ("search/gpu_check_out/", False), ("eval/train_isic.py.", False),
])
def test_the_path_rule(ref, bad):
    assert bool(missing_path(ref)) == bad


@pytest.mark.parametrize("dotted, bad", [
    ("common.labeled.metrics.balanced_accuracy_from_csv", False), ("common.arch", False), ("common.config.ConfigError", False),
    ("common.labeled.metrics.no_such_function", True), ("common.proxy_stats", True), ("common.search.executors.base", False),
])
def test_the_module_rule(dotted, bad):
    assert bool(missing_module(dotted)) == bad


def test_the_link_rule(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# Is it good? (`search/x.py`)\n\n```\n# not a heading\n```\n## Is it good? (search/x.py)\n")
    page = tmp_path / "README.md"
    page.write_text("")
    assert broken_link(page, "docs/a.md#is-it-good-searchxpy") is None
    assert broken_link(page, "docs/a.md#is-it-good-searchxpy-1") is None  # the second heading of that name
    assert broken_link(page, "docs/a.md#not-a-heading") and broken_link(page, "docs/b.md")
    assert broken_link(page, "https://example.org/nowhere") is None
