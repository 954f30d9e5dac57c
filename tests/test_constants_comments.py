"""Every constant in a script's constants block has a comment: the block is the one place a script's settings are
documented.

A script is search/*.py or eval/*.py; its constants block lies between the first two ruler lines (a comment of only
dashes, `# ----------`, at least 10). Rule: a constant (an assignment at the module's top level inside the block)
is commented when a trailing comment — one after code on its line — sits on any line its assignment spans. So a
one-line constant needs `NAME = value  # comment`, and a value spread over several lines needs a trailing comment on
one of them. A comment on a line of its own (a section heading, or the continuation of the previous constant's
comment) documents no constant. A script without two rulers has no block and is not checked; a block without a
constant fails (a ruler out of place).
"""
import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULER = re.compile(r"#\s*-{10,}\s*")
SCRIPTS = sorted(p for d in ("search", "eval") for p in (ROOT / d).glob("*.py"))


def uncommented_constants(source):
    """(line, name) of each constant in the block without a trailing comment; None when there is no block."""
    lines = source.splitlines()
    rulers = [i for i, line in enumerate(lines, 1) if RULER.fullmatch(line)]
    if len(rulers) < 2:
        return None
    first, second = rulers[:2]
    trailing = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT and not tok.line.lstrip().startswith("#")}
    constants = [node for node in ast.parse(source).body
                 if isinstance(node, ast.Assign | ast.AnnAssign) and first < node.lineno < second]
    if not constants:
        raise AssertionError(f"no constant between the rulers on lines {first} and {second}")
    return [(node.lineno, ast.unparse(node.targets[0] if isinstance(node, ast.Assign) else node.target))
            for node in constants if not trailing & set(range(node.lineno, node.end_lineno + 1))]


@pytest.mark.parametrize("script", SCRIPTS, ids=[f"{p.parent.name}/{p.name}" for p in SCRIPTS])
def test_every_constant_has_a_comment(script):
    missing = uncommented_constants(script.read_text())
    assert not missing, f"{script.relative_to(ROOT)}: constants without a comment: " + ", ".join(
        f"{name} (line {line})" for line, name in missing)


def test_the_scripts_with_a_block_are_the_ones_with_settings():
    """search.py and train_isic.py are the two scripts every user runs: their blocks must be found."""
    found = {p.name for p in SCRIPTS if uncommented_constants(p.read_text()) is not None}
    assert {"search.py", "train_isic.py", "predict.py", "proxy_study.py", "label_curve.py"} <= found


RULE = "# " + "-" * 20 + "\n"


@pytest.mark.parametrize("block, missing", [
    ("A = 1  # one\nB = 2\n", [(4, "B")]),
    ("# a heading\nA = 1\n# not A's comment\n", [(4, "A")]),
    ("A = (1,\n     2)  # a pair\nB = {\n    'x': 1,  # inside\n}\n", []),
    ("A = 1  # one\nB: int = 2\nC = D = 3  # shared\n", [(4, "B")]),
    ("S = '# not a comment'\n", [(3, "S")]),
], ids=["one-missing", "heading-and-own-line-comments", "multi-line-values", "annotated-and-chained", "hash-in-string"])
def test_the_rule(block, missing):
    source = '"""doc"""\n' + RULE + block + RULE + "E = 5\n"  # E after the block needs no comment
    assert uncommented_constants(source) == missing


def test_no_block_and_an_empty_block():
    assert uncommented_constants("A = 1\n") is None
    with pytest.raises(AssertionError, match="no constant"):
        uncommented_constants(RULE + "# only a heading\n" + RULE)
