"""The docs hold what they claim: every method card follows docs/methods/TEMPLATE.md, every Python block of a
card that starts with ``# runs`` runs (tiny tensors, CPU), and every relative link in README.md and docs/
points at a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
METHODS = ROOT / "docs" / "methods"
TEMPLATE = METHODS / "TEMPLATE.md"
CARDS = sorted(p for p in METHODS.glob("*.md") if p != TEMPLATE)
RUNS = re.compile(r"^```python\n(# runs\b.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(##+) (.+?)\s*$", re.MULTILINE)
HOW = "How to use it"


def snippets(card: Path) -> list[str]:
    return RUNS.findall(card.read_text())


def outline(text: str) -> tuple[list[str], list[str]]:
    """The card's ``##`` sections, and the ``###`` parts of its "How to use it" section."""
    sections, how, current = [], [], None
    for hashes, title in HEADING.findall(text):
        if len(hashes) == 2:
            sections.append(title)
            current = title
        elif len(hashes) == 3 and current == HOW:
            how.append(title)
    return sections, how


def test_there_are_cards_and_a_template():
    assert TEMPLATE.exists() and len(CARDS) >= 7


@pytest.mark.parametrize("card", CARDS, ids=[c.stem for c in CARDS])
def test_card_follows_the_template(card):
    want = outline(TEMPLATE.read_text())
    assert want[0] == ["What", "When to use it", HOW, "Hyper-parameters", "Technical details", "Paper", "API"]
    assert outline(card.read_text()) == want, f"{card.name}: sections differ from TEMPLATE.md"
    assert card.read_text().startswith("# "), f"{card.name} has no title"
    assert len(snippets(card)) >= 2, f"{card.name}: needs a runnable functional and a callback snippet"


SNIPPETS = [pytest.param(code, id=f"{card.stem}-{i}") for card in CARDS for i, code in enumerate(snippets(card))]


@pytest.mark.parametrize("code", SNIPPETS)
def test_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets may write masks, checkpoints, logs
    torch.manual_seed(0)
    exec(compile(code, "<card snippet>", "exec"), {"__name__": "__card__"})


IMPORT = re.compile(r"`(from salguide[\w.]* import [\w, ]+)`")


@pytest.mark.parametrize("card", CARDS, ids=[c.stem for c in CARDS])
def test_api_imports_resolve(card):
    """Every ``from salguide... import ...`` a card names (its API table above all) imports."""
    lines = IMPORT.findall(card.read_text())
    assert lines, f"{card.name} names no import path"
    for line in lines:
        exec(line, {})


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{doc.relative_to(ROOT)} links to {target}, which does not exist"
        assert ROOT in path.parents or path == ROOT, f"{doc.relative_to(ROOT)} links outside the repository: {target}"


def test_readme_links_every_card():
    readme = ROOT / "README.md"
    linked = {(readme.parent / t.split("#", 1)[0]).resolve() for t in LINK.findall(readme.read_text())}
    missing = [c.name for c in CARDS if c.resolve() not in linked]
    assert not missing, f"README.md does not link the method cards {missing}"


def test_readme_lists_every_preset():
    presets = sorted(p.stem for p in (ROOT / "salguide" / "configs" / "experiment").glob("*.yaml"))
    readme = (ROOT / "README.md").read_text()
    missing = [p for p in presets if f"`{p}`" not in readme]
    assert not missing, f"README.md's preset table lacks {missing}"
