"""Cell diagrams with Graphviz: always the .gv source, PNG and PDF when the `dot` program is installed."""
import shutil
from pathlib import Path

import graphviz

from common.runs import atomic_write_bytes, atomic_write_text

INSTALL_HINT = ("install Graphviz to render cell diagrams "
                "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)")
FORMATS = ("png", "pdf")  # rendered beside the .gv source
DPI = "80"  # PNG resolution, dots per inch: a 5-node normal cell comes out about 650 x 400 px
INPUT_COLOR, NODE_COLOR, OUTPUT_COLOR = "#a8d5a2", "#aed6f1", "#f5cba7"  # green inputs, blue nodes, orange output


def cell_graph(cell, concat, title):
    """graphviz.Digraph of one cell: inputs c_{k-2}, c_{k-1}, numbered nodes, edges labelled with ops, output c_{k}."""
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(len(cell) // 2)]
    g = graphviz.Digraph(
        "cell",
        graph_attr={"label": title, "labelloc": "t", "fontsize": "20", "fontname": "Helvetica", "rankdir": "LR",
                    "dpi": DPI},
        node_attr={"style": "rounded,filled", "shape": "rect", "fontname": "Helvetica", "fontsize": "16",
                   "penwidth": "2", "height": "0.5"},
        edge_attr={"fontname": "Helvetica", "fontsize": "13", "penwidth": "1.5"},
    )
    for name in names[:2]:
        g.node(name, fillcolor=INPUT_COLOR)
    g.node("c_{k}", fillcolor=OUTPUT_COLOR)
    for name in names[2:]:
        g.node(name, fillcolor=NODE_COLOR)
    for i, (op, state) in enumerate(cell):
        g.edge(names[state], names[2 + i // 2], label=op)  # edges 2i and 2i+1 feed node i
    for state in concat:
        g.edge(names[state], "c_{k}", color="gray")
    return g


def write_cell_diagrams(genotype, out_dir, log=print):
    """normal_cell.{gv,png,pdf} and reduce_cell.{gv,png,pdf}; returns the written paths. Never raises for missing dot."""
    out_dir, written, missing = Path(out_dir), [], shutil.which("dot") is None
    for kind in ("normal", "reduce"):
        g = cell_graph(getattr(genotype, kind), getattr(genotype, kind + "_concat"), f"{kind} cell")
        gv = out_dir / f"{kind}_cell.gv"
        atomic_write_text(gv, g.source)
        written.append(gv)
        for fmt in () if missing else FORMATS:
            target = gv.with_suffix("." + fmt)
            try:
                atomic_write_bytes(target, g.pipe(format=fmt, engine="dot", quiet=True))
            except graphviz.ExecutableNotFound:  # dot vanished from PATH after the check above
                missing = True
                break
            except graphviz.CalledProcessError as exc:  # a broken Graphviz install: keep the source, go on
                stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr)
                log(f"warning: dot could not render {gv.name}: {stderr.strip()[:200]}")
                continue
            written.append(target)
    if missing:
        log(f"cell diagrams: kept the Graphviz sources ({out_dir}/*_cell.gv); {INSTALL_HINT}")
    return written
