#!/usr/bin/env python3
"""Code lines of each tutorial port against the notebook classes it ports.

Counts lines that hold code: no blank lines, no comments, no docstrings (Python) and no
`//`, `///`, `//!` or `/* */` comments (Rust, whose doc examples are comments too). The
notebook side is `notebooks/tutorialN.py` (the ported classes, copied verbatim); the port side
is `src/tutorialN.rs` as a whole, hyper-parameter reading and checkpoint loading included.

    python3 ports/count_lines.py [--max-ratio 1.5]

Exits 1 when a port is over the ratio.
"""
import ast
import io
import sys
import tokenize
from pathlib import Path

HERE = Path(__file__).resolve().parent


def python_code_lines(path):
    src = path.read_text()
    # Notebook magics (`%tensorboard`) are not Python; they are not code of a class either.
    src = "\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in src.splitlines())
    docstrings = set()
    for node in ast.walk(ast.parse(src)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            v = body[0].value
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    code = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                        tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        for line in range(tok.start[0], tok.end[0] + 1):
            if line not in docstrings:
                code.add(line)
    return len(code)


def rust_code_lines(path):
    n, in_block = 0, False
    for line in path.read_text().splitlines():
        t = line.strip()
        if in_block:
            in_block = "*/" not in t
            continue
        if t.startswith("/*"):
            in_block = "*/" not in t
            continue
        if t and not t.startswith("//"):
            n += 1
    return n


def main():
    max_ratio = 1.5
    if "--max-ratio" in sys.argv:
        max_ratio = float(sys.argv[sys.argv.index("--max-ratio") + 1])
    over = False
    print(f"{'port':<12} {'notebook':>8} {'port':>6} {'ratio':>6}")
    for n in (3, 5, 6):
        nb = python_code_lines(HERE / "notebooks" / f"tutorial{n}.py")
        rs = rust_code_lines(HERE / "src" / f"tutorial{n}.rs")
        ratio = rs / nb
        over |= ratio > max_ratio
        print(f"tutorial{n:<4} {nb:>8} {rs:>6} {ratio:>5.2f}x")
    print(f"limit: {max_ratio:.2f}x")
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
