"""The documents users get: every document the code and README cite exists, and their links resolve."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pipelines", "probe", "warehouse", "app", "benchmarks")
CITED = re.compile(r"docs/[\w-]+\.md")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    return {_anchor(line.lstrip("#")) for line in doc.read_text().splitlines() if line.startswith("#")}


def _code_files() -> list[Path]:
    return [p for folder in SOURCES for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts]


def test_code_cites_shipped_documents_only() -> None:
    cited = {m for p in _code_files() for m in CITED.findall(p.read_text())}
    assert {"docs/methods.md", "docs/performance.md"} <= cited  # the citations the search must find
    assert all((REPO / name).is_file() for name in cited), sorted(n for n in cited if not (REPO / n).is_file())
    unshipped = [str(p.relative_to(REPO)) for p in _code_files() if "DESIGN.md" in p.read_text()]
    assert not unshipped, f"cite docs/*.md instead of the design note that does not ship: {unshipped}"


def test_relative_links_of_readme_and_docs_resolve() -> None:
    documents = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    checked = 0
    for doc in documents:
        for target in LINK.findall(doc.read_text()):
            if "://" in target:
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            assert linked.is_file(), f"{doc.name}: link to missing {target}"
            assert not anchor or anchor in _anchors(linked), f"{doc.name}: no heading for #{anchor} in {linked.name}"
            checked += 1
    assert checked >= 8  # README's links to the docs and the docs' links to each other
