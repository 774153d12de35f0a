"""Every preset cites the publication or repository it reproduces, never our copies of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search_spaces.registry import load_experiment, preset_names
from search_spaces.sources import Source, cite, cite_short, source_url

ROOT = Path(__file__).resolve().parents[1]
# What a user or reader sees: the packages, the README, cluster configs, the benchmarks.
PRODUCT = ("orchestrator", "trainables", "search_spaces", "analysis", "benchmarks")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".json", ".html", ".sh", ".cfg"}
# Our copies of the source documents, by path or by their number ("seed 001", "seed-004").
OUR_COPIES = re.compile(r"shared/seeds|\bseeds?[ _-]?00\d", re.IGNORECASE)


def _product_files() -> list[Path]:
    files = [ROOT / "README.md", *ROOT.glob("cluster*.yaml"), *ROOT.glob("cluster*.yml")]
    for folder in PRODUCT:
        files += [p for p in (ROOT / folder).rglob("*")
                  if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts]
    return files


def test_product_never_points_at_our_copies_of_the_sources():
    files = _product_files()
    assert len(files) > 50 and ROOT / "README.md" in files
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for path in files
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                     .splitlines(), 1)
            if OUR_COPIES.search(line)]
    assert not hits, "cite the publication or repository itself:\n" + "\n".join(hits)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_cites_a_title_and_an_address(name):
    source = load_experiment(name).source
    assert isinstance(source, Source)
    assert source.title.strip()
    # Its own address, or (a course report, a write-up, a blog article with none) those of
    # the works it builds on, so a reader can always follow the citation somewhere.
    assert source.urls, f"{name}: no URL or repository in {source.cite()}"
    assert all(re.fullmatch(r"https://[^\s<>\"']+", url) for url in source.urls), source.urls
    assert all(work.title.strip() and work.role for work in source.builds_on)
    full, short = cite(source), cite_short(source)
    assert f'"{source.title}"' in short and f'"{source.title}"' in full
    assert all(url in full for url in source.urls) and "https://" not in short
    assert source_url(source) == source.url
    assert not OUR_COPIES.search(full)


def test_plain_text_sources_pass_through():
    # A preset file of one's own may still give its source as one string.
    assert cite("my notes") == cite_short("my notes") == "my notes"
    assert source_url("my notes") is None
    work = Source(title="T", authors="A. B et al.", venue="ICML", year=2021, url="https://x.org")
    assert work.cite() == str(work) == 'A. B et al., "T", ICML 2021, https://x.org'
    assert work.cite_short() == '"T", ICML 2021'
