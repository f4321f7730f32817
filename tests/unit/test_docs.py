"""The docs and every --help stand on their own: links resolve inside the repo, no pointers to
files users do not have, to issue numbers, or to commands that do not exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from routelmt.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SOURCES = [*sorted((REPO / "src").rglob("*.py")), *sorted((REPO / "src").rglob("*.yaml"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_links_resolve_inside_the_repo(doc):
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
    assert not re.search(r"\bissues? \d", text), f"{doc.name} cites an issue number"
    assert "../shared/docs" not in text


def test_method_md_is_in_the_repo_and_cited_by_its_path():
    assert (REPO / "docs" / "method.md").is_file()
    for path in [*SOURCES, *DOCS]:
        text = path.read_text(encoding="utf-8")
        bare = re.findall(r"(?<![/\[(])method\.md", text)
        assert not bare, f"{path.relative_to(REPO)}: say docs/method.md (or link it)"
        assert not re.search(r"\bissues? \d", text), f"{path.relative_to(REPO)} cites an issue"


def test_every_help_is_self_contained():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    texts = [parser.format_help()] + [sub.choices[name].format_help() for name in COMMANDS]
    for text in texts:
        assert "method.md" not in text and "issue " not in text
        for command in re.findall(r"`routelmt (\w[\w-]*)", text):
            assert command in COMMANDS, f"--help names `routelmt {command}`, which does not exist"
