"""Every repository file the docs and pyproject.toml point a reader at exists (paths go stale when files move)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED_PATH = re.compile(r"\b(?:tests|kbtc|flows|benchmarks|migrations|docs)/[\w./-]+\.(?:py|md|yaml|toml|jsonl?)\b")


def test_cited_repository_paths_exist() -> None:
    sources = [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "prefect.yaml", *sorted((ROOT / "docs").glob("*.md"))]
    missing = sorted(
        f"{source.relative_to(ROOT)}: {cited}"
        for source in sources
        for cited in set(CITED_PATH.findall(source.read_text()))
        if not (ROOT / cited).exists()
    )
    assert not missing
