"""Cell diagrams with Graphviz: always the .gv source, PNG and PDF when the `dot` program is installed."""
import shutil
import subprocess
from pathlib import Path

INSTALL_HINT = "install Graphviz to render cell diagrams (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)"


def cell_source(cell, concat, title):
    """Graphviz DOT text for one cell: inputs c_{k-2}, c_{k-1}, numbered nodes, edges labelled with ops."""
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(len(cell) // 2)]
    lines = [
        "digraph cell {",
        f'  label="{title}"; labelloc=t; fontsize=20; fontname="Helvetica"; rankdir=LR;',
        '  node [style="rounded,filled", shape=rect, fontname="Helvetica", fontsize=16, penwidth=2, height=0.5];',
        '  edge [fontname="Helvetica", fontsize=13, penwidth=1.5];',
        '  "c_{k-2}" [fillcolor="#a8d5a2"]; "c_{k-1}" [fillcolor="#a8d5a2"];',
        '  "c_{k}" [fillcolor="#f5cba7"];',
    ]
    lines += [f'  "{n}" [fillcolor="#aed6f1"];' for n in names[2:]]
    for i, (op, state) in enumerate(cell):
        lines.append(f'  "{names[state]}" -> "{names[2 + i // 2]}" [label="{op}"];')
    lines += [f'  "{names[s]}" -> "c_{{k}}" [color=gray];' for s in concat]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_cell_diagrams(genotype, out_dir, log=print):
    """normal_cell.{gv,png,pdf} and reduce_cell.{gv,png,pdf}; returns the written paths. Never raises for missing dot."""
    out_dir, dot, written = Path(out_dir), shutil.which("dot"), []
    for kind in ("normal", "reduce"):
        gv = out_dir / f"{kind}_cell.gv"
        gv.write_text(cell_source(getattr(genotype, kind), getattr(genotype, kind + "_concat"), f"{kind} cell"))
        written.append(gv)
        for fmt in ("png", "pdf") if dot else ():
            target = gv.with_suffix("." + fmt)
            result = subprocess.run([dot, f"-T{fmt}", "-Gdpi=80", str(gv), "-o", str(target)], capture_output=True, text=True)
            if result.returncode == 0:
                written.append(target)
            else:
                log(f"warning: dot could not render {gv.name}: {result.stderr.strip()[:200]}")
    if not dot:
        log(f"cell diagrams: kept the Graphviz sources ({out_dir}/*_cell.gv); {INSTALL_HINT}")
    return written
