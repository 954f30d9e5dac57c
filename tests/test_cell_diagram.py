"""Cell diagrams: the Graphviz source names every op and edge; PNG/PDF with `dot`; without it, source and a hint."""
import re
import shutil

import graphviz
import pytest
from PIL import Image

import common.arch.cell_diagram as cd
from common.arch import genotypes as G

NAMED = ["DARTS_V2", "CNAS_ISIC_s4", "CNAS_ISIC_s5"]


def _edges(source):
    """(tail, head, label) of every edge statement in DOT text, names unquoted."""
    unq = lambda s: s.strip('"')  # noqa: E731
    found = re.findall(r'^\s*("[^"]+"|\w+) -> ("[^"]+"|\w+) \[(?:label=("?)([\w"]+)\3|color=gray)\]', source, re.M)
    return [(unq(t), unq(h), label or None) for t, h, _, label in found]


@pytest.mark.parametrize("name", NAMED)
def test_source_names_every_op_and_edge(name):
    genotype = getattr(G, name)
    for kind in ("normal", "reduce"):
        cell, concat = getattr(genotype, kind), getattr(genotype, kind + "_concat")
        source = cd.cell_graph(cell, concat, f"{kind} cell").source
        assert source.startswith("digraph cell {") and f'label="{kind} cell"' in source
        names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(len(cell) // 2)]
        expected = [(names[state], str(i // 2), op) for i, (op, state) in enumerate(cell)]
        expected += [(names[s], "c_{k}", None) for s in concat]
        assert _edges(source) == expected  # every op on its edge, in the genotype's order, and the concat edges


def _no_dot(monkeypatch, tmp_path):
    """A PATH with no `dot` on it: the real way a machine without Graphviz looks."""
    empty = tmp_path / "empty_path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("dot") is None


def test_writes_source_png_and_pdf_with_dot(tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (CI installs it)")
    lines = []
    written = cd.write_cell_diagrams(G.CNAS_ISIC_s5, tmp_path, log=lines.append)
    names = sorted(p.name for p in written)
    assert names == sorted(f"{k}_cell.{ext}" for k in ("normal", "reduce") for ext in ("gv", "png", "pdf"))
    assert lines == []  # nothing to say when all went well
    for kind in ("normal", "reduce"):
        with Image.open(tmp_path / f"{kind}_cell.png") as im:
            assert im.format == "PNG" and 200 < im.width < 2000 and 200 < im.height < 2000
        assert (tmp_path / f"{kind}_cell.pdf").read_bytes().startswith(b"%PDF")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_without_dot_keeps_the_source_and_says_how_to_install(tmp_path, monkeypatch):
    _no_dot(monkeypatch, tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    lines = []
    written = cd.write_cell_diagrams(G.DARTS_V2, out, log=lines.append)
    assert sorted(p.name for p in written) == ["normal_cell.gv", "reduce_cell.gv"]
    assert sorted(p.name for p in out.iterdir()) == ["normal_cell.gv", "reduce_cell.gv"]
    assert (out / "normal_cell.gv").read_text() == cd.cell_graph(G.DARTS_V2.normal, G.DARTS_V2.normal_concat,
                                                                 "normal cell").source
    assert len(lines) == 1 and "\n" not in lines[0]  # one line, once for both cells
    assert "install Graphviz" in lines[0] and "apt-get install graphviz" in lines[0] and "brew" in lines[0]


def test_dot_vanishing_after_the_check_is_handled_like_missing_dot(tmp_path, monkeypatch):
    """`which` finds dot but running it does not (PATH changed, broken link): same outcome, no exception."""
    _no_dot(monkeypatch, tmp_path)
    monkeypatch.setattr(cd.shutil, "which", lambda name, *a, **k: "/usr/bin/dot")
    calls, real_pipe = [], graphviz.Digraph.pipe

    def pipe(self, *args, **kwargs):
        calls.append(kwargs.get("format"))
        return real_pipe(self, *args, **kwargs)  # really runs `dot`, which PATH no longer has

    monkeypatch.setattr(graphviz.Digraph, "pipe", pipe)
    lines = []
    written = cd.write_cell_diagrams(G.DARTS_V2, tmp_path, log=lines.append)
    assert [p.name for p in written] == ["normal_cell.gv", "reduce_cell.gv"]
    assert calls == ["png"]  # gave up on the first failure instead of trying every file
    assert len(lines) == 1 and "install Graphviz" in lines[0]


def test_a_failing_render_warns_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(cd.shutil, "which", lambda name, *a, **k: "/usr/bin/dot")

    def pipe(self, *args, format=None, **kwargs):
        if format == "pdf":
            raise graphviz.CalledProcessError(1, ["dot", "-Tpdf"], stderr=b"Error: no pdf plugin")
        return b"\x89PNG fake"

    monkeypatch.setattr(graphviz.Digraph, "pipe", pipe)
    lines = []
    written = cd.write_cell_diagrams(G.DARTS_V2, tmp_path, log=lines.append)
    assert sorted(p.name for p in written) == ["normal_cell.gv", "normal_cell.png", "reduce_cell.gv", "reduce_cell.png"]
    assert (tmp_path / "normal_cell.png").read_bytes() == b"\x89PNG fake"
    assert len(lines) == 2 and all("no pdf plugin" in line and line.startswith("warning:") for line in lines)
