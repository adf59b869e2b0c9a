"""Docs point only to files in the repository or to public URLs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "bench" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_no_page_cites_a_path_outside_the_repository():
    offenders = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"(?<![\w.])(/work/|\.\./shared/|/home/|/root/)", text):
            offenders.append(f"{page.relative_to(ROOT)}: {text[match.start():match.start() + 40]!r}")
    assert offenders == []


def test_relative_links_resolve_to_files_in_the_repository():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists() or ROOT not in path.parents:
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []
