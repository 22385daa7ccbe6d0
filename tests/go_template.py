"""Render the Go-template subset our Ollama Modelfiles use, to check TEMPLATE against the runtime's prompt.

Written by hand: no maintained Python package renders Go's text/template. Supported: text, `{{ .Field }}`,
`{{ if COND }} ... {{ else }} ... {{ end }}`, `{{ range .List }} ... {{ end }}` (dot becomes the element),
conditions `.Field`, `eq A B`, `ne A B` with string literals, and the `{{-` / `-}}` whitespace trims.
Anything else raises, so a Modelfile using more of Go's syntax fails the test instead of rendering wrong.
"""

from __future__ import annotations

import re
import shlex

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def render_go(template: str, data: dict) -> str:
    """The text Go's text/template would produce for `template` with dot = `data`."""
    tokens = _lex(template)
    tree, rest = _parse(tokens, 0)
    if rest != len(tokens):
        raise ValueError("unbalanced {{ end }}")
    return _run(tree, data)


def _lex(template: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", body)], trims applied."""
    tokens, at = [], 0
    for match in _ACTION.finditer(template):
        text = template[at:match.start()]
        if match.group(1):
            text = text.rstrip()
        if tokens and tokens[-1][0] == "trim":
            tokens.pop()
            text = text.lstrip()
        tokens.append(("text", text))
        tokens.append(("action", match.group(2)))
        if match.group(3):
            tokens.append(("trim", ""))
        at = match.end()
    tail = template[at:]
    if tokens and tokens[-1][0] == "trim":
        tokens.pop()
        tail = tail.lstrip()
    return tokens + [("text", tail)]


def _parse(tokens, i):
    """(nodes, index after them) up to a matching end / else."""
    nodes = []
    while i < len(tokens):
        kind, body = tokens[i]
        word = body.split(" ", 1)[0] if kind == "action" else ""
        if word in ("end", "else"):
            return nodes, i
        if word in ("if", "range"):
            inner, i = _parse(tokens, i + 1)
            otherwise = []
            if tokens[i][1] == "else":
                otherwise, i = _parse(tokens, i + 1)
            nodes.append((word, body[len(word):].strip(), inner, otherwise))
        else:
            nodes.append((kind, body))
        i += 1
    return nodes, i


def _run(nodes, dot) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "action":
            out.append(str(_value(node[1], dot)))
        elif node[0] == "if":
            out.append(_run(node[2] if _truth(node[1], dot) else node[3], dot))
        else:  # range
            out.append("".join(_run(node[2], item) for item in _value(node[1], dot)))
    return "".join(out)


def _value(expr: str, dot):
    if expr.startswith('"'):
        return shlex.split(expr)[0]
    if expr.startswith("."):
        return dot.get(expr[1:], "")
    raise ValueError(f"unsupported Go template expression {expr!r}")


def _truth(cond: str, dot) -> bool:
    words = shlex.split(cond, posix=False)
    if words[0] in ("eq", "ne") and len(words) == 3:
        same = _value(words[1], dot) == _value(words[2], dot)
        return same if words[0] == "eq" else not same
    if len(words) == 1:
        return bool(_value(words[0], dot))
    raise ValueError(f"unsupported Go template condition {cond!r}")
