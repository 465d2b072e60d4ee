"""Code and docs cite the project's own documentation, and every citation leads somewhere.

A reader following "docs/domain.md, 'Loyalty'" from a docstring, or a runbook link from an
alert, must find that file and that section in the repository. A citation of a file outside it
(the product specification the project started from) cannot be followed at all.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("touchstream", "tests", "docs", "bench", "deploy")
TOP_FILES = ("README.md", "Makefile", "Dockerfile", "pyproject.toml")
SUFFIXES = {".py", ".md", ".json", ".toml", ".yml", ".yaml", ".txt", ".acl", ".cfg"}
# files outside the repository (written in pieces so this file does not cite them itself)
OUTSIDE = re.compile("|".join(("PRODUCT" + r"\.md", "ENGINEERING" + r"\.md", "shared" + "/spec")))
MD_PATH = r"(?P<path>(?:[\w.-]+/)*[\w.-]+\.md|README)\b"
# docs/x.md, "Section" / docs/x.md ("Section" / docs/x.md, 'Section' / *Section* / `Section`
SECTION = re.compile(
    MD_PATH
    + r"(?:,|\s\(|,\s*\()[\s#]*"
    + r"(?:\"(?P<dq>[^\"]{1,90})\"|'(?P<sq>[^'\n]{1,90})'|\*(?P<em>[^*\n]{1,90})\*"
    + r"|`(?P<bt>Touchstream\w+)`|(?P<alert>Touchstream[A-Z]\w+))"
)
ANCHOR = re.compile(r"(?P<path>(?:[\w.-]+/)*[\w.-]+\.md)#(?P<anchor>[\w-]+)")
DOCS_FILE = re.compile(r"\bdocs/[\w.-]+\.md\b")


def scanned_files() -> list[Path]:
    files = [ROOT / name for name in TOP_FILES if (ROOT / name).exists()]
    for top in SCANNED:
        files += [
            p
            for p in sorted((ROOT / top).rglob("*"))
            if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts
        ]
    this = Path(__file__).resolve()  # its examples are not citations
    return [p for p in files if p != this]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def sections(doc: Path) -> list[str]:
    """Headings of a Markdown file, and the bold lead of a paragraph (README's **Privacy.**)."""
    found = []
    for line in doc.read_text().splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            found.append(m.group(1).replace("`", "").strip())
        elif m := re.match(r"\*\*([^*]+?)\.?\*\*", line):
            found.append(m.group(1).strip())
    return found


def resolve(path: str, cited_in: Path) -> Path | None:
    name = "README.md" if path == "README" else path
    for base in (ROOT, cited_in.parent):
        if (base / name).is_file():
            return base / name
    return None


def names_a_section(title: str, doc: Path) -> bool:
    want = " ".join(title.replace("`", "").split()).casefold()
    for heading in sections(doc):
        have = heading.casefold()
        if have == want or (have.startswith(want) and not have[len(want)].isalnum()):
            return True
    return False


def citations() -> list[tuple[Path, str, str]]:
    """(file, cited path, section title) of every citation of a section."""
    found = []
    for source in scanned_files():
        text = source.read_text()
        for m in SECTION.finditer(text):
            title = next(g for g in (m["dq"], m["sq"], m["em"], m["bt"], m["alert"]) if g)
            # a title wrapped onto a comment's next line: drop the comment marks
            title = re.sub(r"\n\s*#?\s*", " ", title)
            found.append((source, m["path"], title))
    return found


def test_nothing_cites_a_file_outside_the_repository() -> None:
    outside = [
        f"{source.relative_to(ROOT)}:{n}"
        for source in scanned_files()
        for n, line in enumerate(source.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert outside == [], "cite docs/ instead (docs/domain.md holds the product's rules)"


def test_every_cited_docs_file_exists() -> None:
    missing = sorted(
        f"{source.relative_to(ROOT)}: {name}"
        for source in scanned_files()
        for name in DOCS_FILE.findall(source.read_text())
        if not (ROOT / name).is_file()
    )
    assert missing == []


def test_every_cited_section_exists() -> None:
    cited = citations()
    # guards the test itself: a pattern that finds nothing would let everything pass
    assert len(cited) > 40
    assert any(path == "docs/domain.md" and title == "Guard chain" for _, path, title in cited)
    wrong = []
    for source, path, title in cited:
        doc = resolve(path, source)
        if doc is None or not names_a_section(title, doc):
            wrong.append(f'{source.relative_to(ROOT)}: {path}, "{title}"')
    assert sorted(set(wrong)) == []


def test_every_anchor_names_a_heading() -> None:
    wrong = []
    for source in scanned_files():
        for m in ANCHOR.finditer(source.read_text()):
            doc = resolve(m["path"], source)
            if doc is None or m["anchor"] not in {slug(h) for h in sections(doc)}:
                wrong.append(f"{source.relative_to(ROOT)}: {m['path']}#{m['anchor']}")
    assert sorted(set(wrong)) == []
