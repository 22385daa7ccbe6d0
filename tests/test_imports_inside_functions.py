"""Every import inside a function states why it is there (the house rule on imports).

An import inside a function is allowed only for a real reason (a heavy or optional dependency kept out of
`lwdpo-edge --help` and light installs, or a module that imports one at its top), never to dodge an import
cycle, and the reason is a `#` comment on the import line (any line of a multi-line import) or the line
just above it. This scans the package folders with ast and lists FILE:LINE for every import that has none.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("lwdpo_edge", "train", "export", "apps")


def comment_lines(source: str) -> set[int]:
    """Line numbers that carry a `#` comment (tokenize, so a `#` inside a string does not count)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def imports_inside_functions(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements anywhere inside a (async) function body, nested functions included, once each."""
    found: dict[int, ast.Import | ast.ImportFrom] = {}
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found[id(node)] = node
    return sorted(found.values(), key=lambda node: node.lineno)


def unexplained_imports(path: Path) -> list[int]:
    """Lines of the imports inside functions in `path` with no comment on their lines or the line above."""
    source = path.read_text(encoding="utf-8")
    comments = comment_lines(source)
    missing = []
    for node in imports_inside_functions(ast.parse(source, filename=str(path))):
        lines = range(node.lineno - 1, (node.end_lineno or node.lineno) + 1)
        if not comments.intersection(lines):
            missing.append(node.lineno)
    return missing


def python_files() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))


def test_the_scan_sees_the_package_folders():
    files = python_files()
    for folder in FOLDERS:
        assert any(path.relative_to(ROOT).parts[0] == folder for path in files), folder


def test_the_scan_flags_only_imports_inside_functions_without_a_comment(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"  # 1: module level, fine
        "def f():\n"
        "    import json\n"  # 3: flagged
        "    import torch  # torch: heavy\n"  # 4: comment on the line
        "    # optional: onnx extra\n"
        "    import onnx\n"  # 6: comment on the line above
        "    from typing import (  # light, here for the example\n"
        "        Any,\n"
        "    )\n"
        "    s = '# not a comment'\n"
        "    from re import compile\n"  # 11: a `#` inside a string above does not count
        "    class C:\n"
        "        def g(self):\n"
        "            import csv\n"  # 14: nested, flagged once
        "    return s\n"
    )
    assert unexplained_imports(sample) == [3, 11, 14]


def test_every_import_inside_a_function_states_its_reason():
    missing = [
        f"{path.relative_to(ROOT)}:{line}" for path in python_files() for line in unexplained_imports(path)
    ]
    assert not missing, (
        "imports inside functions need a reason comment on the line (or the line above), or belong at the "
        "top of the module:\n" + "\n".join(missing)
    )
