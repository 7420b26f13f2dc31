"""Every relative link and image of the README and of docs/*.md points at a file of the project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)|<img src=\"([^\"]+)\"")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    targets = [a or b for a, b in LINK.findall(page.read_text())]
    local = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    missing = [t for t in local if not (page.parent / t).exists()]
    assert not missing, f"{page.name}: {missing}"


def test_readme_opens_with_the_quick_start_and_shows_figures():
    text = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings[0] == "Quick start"
    assert len(re.findall(r"<img src=\"docs/figures/[^\"]+\.png\"", text)) >= 3
    assert len(text) < 8000  # reference material lives in docs/
