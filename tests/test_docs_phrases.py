"""What a user reads describes the product, not how it was developed.

README.md, docs/*.md, the `--help` of every `lwdpo-edge` command, the files `lwdpo-edge eval` writes,
and the sources of the package, its stages, benches, scripts, examples and configs must not mention
issue numbers, work sessions, "this machine", a design note outside the repository and the like:
a user cannot look those up. Upstream links (e.g. github.com/ggml-org/llama.cpp/issues/20824) are
allowed: URLs are removed before matching. A phrase broken over lines, comment markers or the help
screen's box characters still matches.

Also: every relative markdown link in README.md and docs/ points at a file (and heading) that exists.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SEP = r"(?:\s|#|│|\*)+"  # between words: spaces, line breaks, comment markers, rich's box edge, emphasis


def words(phrase: str) -> str:
    """A regex for the phrase's words in order, whatever separates them."""
    return r"\b" + SEP.join(re.escape(w) for w in phrase.split()) + r"\b"


PATTERNS: dict[str, re.Pattern] = {
    "an issue number": re.compile(r"\bissues?(?:" + SEP + r"|-)#?\d+", re.IGNORECASE),
    "a numbered session": re.compile(r"\bsessions?" + SEP + r"\d+", re.IGNORECASE),
    "a work session": re.compile(r"\b(?:this|that|another|other|earlier|previous|later|next)" + SEP
                                 + r"sessions?\b(?!'s conversation)", re.IGNORECASE),
    "in session": re.compile(words("in session"), re.IGNORECASE),
    "the session ended": re.compile(words("session ended"), re.IGNORECASE),
    "this machine": re.compile(words("this machine"), re.IGNORECASE),
    "the development machine": re.compile(words("development machine"), re.IGNORECASE),
    "a machine kind": re.compile(words("machine kind"), re.IGNORECASE),
    "the 2-core machine": re.compile(r"\bthe" + SEP + r"(?:shared" + SEP + r")?2-core" + SEP
                                     + r"(?:development" + SEP + r")?machine\b", re.IGNORECASE),
    "lost with the machine": re.compile(words("lost with the machine"), re.IGNORECASE),
    "a machine lent": re.compile(r"\bwas" + SEP + r"lent\b", re.IGNORECASE),
    "another engineer": re.compile(r"\b(?:another|other)" + SEP + r"engineer", re.IGNORECASE),
    "not mine to": re.compile(words("not mine to"), re.IGNORECASE),
    "a closing note": re.compile(words("closing note"), re.IGNORECASE),
    "a named issue": re.compile(r"\bthe" + SEP + r"(?:runtime|export|eval|evaluation|feedback|steering)" + SEP
                                + r"issue\b", re.IGNORECASE),
    # the design note is docs/design.md; a DESIGN.md is not in the repository
    "DESIGN.md": re.compile(r"\bDESIGN\.md\b"),
}

URL = re.compile(r"https?://\S+")

# (path relative to the repository root, pattern name, regex the matched text must satisfy): a hit
# that is a product word, not process talk. Keep this short and say why.
ALLOWED: list[tuple[str, str, str]] = []

SOURCE_DIRS = ["lwdpo_edge", "train", "export", "apps", "bench", "scripts", "examples"]
SOURCE_SUFFIXES = {".py", ".sh", ".md", ".yaml", ".yml", ".toml", ".jinja", ".txt", ".cfg", ".ini"}
ROOT_FILES = ["README.md", "Makefile", "pyproject.toml", ".ci/run"]


def user_facing_files() -> list[Path]:
    files = [ROOT / name for name in ROOT_FILES if (ROOT / name).is_file()]
    files += sorted((ROOT / "docs").glob("*.md"))
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            parts = path.relative_to(ROOT).parts
            if path.is_file() and path.suffix in SOURCE_SUFFIXES and not any(
                    p == "__pycache__" or p.startswith(".") or p.endswith(".egg-info") for p in parts):
                files.append(path)
    return files


def hits(text: str, where: str) -> list[str]:
    """Every process phrase in text, as 'where:line: what: the matched words'."""
    text = URL.sub(lambda m: " " * len(m.group()), text)  # keep offsets, so line numbers stay right
    found = []
    for name, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            said = " ".join(match.group().replace("#", " ").replace("│", " ").split())
            if any(where == path and name == kind and re.search(rule, said) for path, kind, rule in ALLOWED):
                continue
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{where}:{line}: {name}: {said!r}")
    return found


def test_docs_and_sources_describe_the_product():
    files = user_facing_files()
    assert ROOT / "README.md" in files and len(files) > 50  # the walk found the tree
    found = []
    for path in files:
        found += hits(path.read_text(encoding="utf-8", errors="replace"), str(path.relative_to(ROOT)))
    assert not found, "process talk in what users read:\n" + "\n".join(found)


def cli_command_paths() -> list[tuple[str, ...]]:
    """Every `lwdpo-edge` command and subcommand, read from the typer app itself."""
    import typer

    from lwdpo_edge.cli import app

    paths: list[tuple[str, ...]] = [()]

    def walk(command, prefix: tuple[str, ...]) -> None:
        for name, sub in (getattr(command, "commands", None) or {}).items():  # a group's subcommands
            paths.append(prefix + (name,))
            walk(sub, prefix + (name,))

    walk(typer.main.get_command(app), ())
    return paths


def test_every_help_text_describes_the_product():
    paths = cli_command_paths()
    assert ("train",) in paths and ("data", "pointwise") in paths
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    found = []
    for path in paths:
        done = subprocess.run([sys.executable, "-m", "lwdpo_edge.cli", *path, "--help"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        shown = done.stdout + done.stderr
        assert done.returncode == 0 and "usage" in shown.lower(), (path, shown[-2000:])
        found += hits(shown, "lwdpo-edge " + " ".join(path + ("--help",)))
    assert not found, "process talk in --help:\n" + "\n".join(found)


def test_the_files_eval_writes_describe_the_product(tmp_path):
    from test_eval_report import _report  # a complete report made by hand: no model needed

    from lwdpo_edge.evaluate.report import write_report

    folder = write_report(_report(), [], tmp_path / "eval")
    written = [p for p in sorted(folder.iterdir()) if p.suffix in {".md", ".json", ".jsonl", ".txt"}]
    assert folder / "summary.md" in written
    found = []
    for path in written:
        found += hits(path.read_text(encoding="utf-8"), f"eval/{path.name}")
    assert not found, "process talk in the report files eval writes:\n" + "\n".join(found)


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_markdown_links_point_at_files_and_headings_that_exist():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for match in LINK.finditer(text):
            target = match.group(1) or match.group(2)
            if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked here
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            line = text.count("\n", 0, match.start()) + 1
            where = f"{page.relative_to(ROOT)}:{line}: {target}"
            if not dest.exists():
                broken.append(where + " (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
                broken.append(where + " (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("text, expected", [
    ("see issue 6's bar", ["an issue number"]),
    ("(issue-17 change)", ["an issue number"]),
    ("measured in session 10", ["a numbered session", "in session"]),
    ("did not fit in this\n# session", ["a work session"]),
    ("on the development\n    machine", ["the development machine"]),
    ("│ keeps the app on this │\n│ machine", ["this machine"]),
    ("the section in DESIGN.md", ["DESIGN.md"]),
    ("https://github.com/ggml-org/llama.cpp/issues/20824", []),
    ("docs/design.md, section 5; the chat session is saved; session_options", []),
])
def test_the_patterns_catch_process_talk_and_spare_product_words(text, expected):
    assert [h.split(": ")[1] for h in hits(text, "x")] == expected
