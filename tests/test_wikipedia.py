"""data/wikipedia.py: the pinned WikiExtractor on a tiny real-format dump, and the formatter."""

from __future__ import annotations

import bz2
import importlib.metadata
import logging
from pathlib import Path

import pytest

from data.pipeline import PipelineError
from data.wikipedia import WIKIEXTRACTOR_VERSION, extract, format_articles

SITEINFO = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>enwiki</dbname>
    <base>https://en.wikipedia.org/wiki/Main_Page</base>
    <generator>MediaWiki 1.41.0</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="10" case="first-letter">Template</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""

# (title, namespace, id, text, redirect target)
PAGES = [
    ("Template:Convert", 10, 5, "{{{1}}} {{{2}}}", None),
    (
        "European lobster",
        0,
        10,
        "'''Homarus gammarus''', known as the '''European lobster''', is a species of [[lobster]]"
        " from the eastern [[Atlantic Ocean|Atlantic]]. It may grow to {{convert|60|cm}} long.\n"
        "\n== Description ==\nLobsters have a hard [[exoskeleton]]. They moult several times a"
        " year.\n\n[[Category:Lobsters]]",
        None,
    ),
    ("Lobster red", 0, 11, "#REDIRECT [[European lobster]]", "European lobster"),
    (
        "Tolkien",
        0,
        12,
        "'''John Ronald Reuel Tolkien''' was an English writer. He wrote ''[[The Hobbit]]''.\n\n"
        "== Life ==\nHe was born in 1892 in [[Bloemfontein]].",
        None,
    ),
    ("Category:Lobsters", 14, 20, "Lobsters of the world.", None),
    ("Empty stub", 0, 21, "{{Stub}}", None),
]

EXPECTED_ARTICLES = [
    "Homarus gammarus, known as the European lobster, is a species of lobster from the eastern"
    " Atlantic. It may grow to 60 cm long. Description. Lobsters have a hard exoskeleton. They"
    " moult several times a year.",
    'John Ronald Reuel Tolkien was an English writer. He wrote "The Hobbit". Life. He was born in'
    " 1892 in Bloemfontein.",
]


def _page(title: str, ns: int, page_id: int, text: str, redirect: str | None) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    redirect_tag = f'    <redirect title="{redirect}" />\n' if redirect else ""
    return (
        f"  <page>\n    <title>{title}</title>\n    <ns>{ns}</ns>\n    <id>{page_id}</id>\n"
        f"{redirect_tag}    <revision>\n      <id>{page_id + 100}</id>\n"
        f'      <text xml:space="preserve">{text}</text>\n    </revision>\n  </page>\n'
    )


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dump") / "enwiki-test-pages-articles.xml"
    path.write_text(SITEINFO + "".join(_page(*page) for page in PAGES) + "</mediawiki>\n")
    return path


def _write_docs(path: Path, docs: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            f'<doc id="{i}" url="https://en.wikipedia.org/wiki?curid={i}" title="{title}">\n'
            f"{title}\n\n{body}\n</doc>\n"
            for i, (title, body) in enumerate(docs)
        )
    )
    return path


@pytest.mark.parametrize("compress", [False, True], ids=["xml", "xml.bz2"])
def test_extract_then_format(dump: Path, tmp_path: Path, compress: bool) -> None:
    if compress:
        compressed = tmp_path / (dump.name + ".bz2")
        compressed.write_bytes(bz2.compress(dump.read_bytes()))
        dump = compressed
    files = extract(dump, tmp_path / "extracted", processes=2)
    assert files == sorted(files)
    assert [path.relative_to(tmp_path / "extracted").as_posix() for path in files] == ["AA/wiki_00"]
    text = files[0].read_text()
    assert text.count("<doc ") == 3  # the redirect, the template and the category are dropped
    assert "'''" not in text and "[[" not in text and "{{" not in text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    out_file = tmp_path / "formatted" / "wiki_one_article_per_line.txt"
    assert format_articles(tmp_path / "extracted", out_file) == 2  # "Empty stub" is skipped
    assert out_file.read_text().splitlines() == EXPECTED_ARTICLES
    assert [p.name for p in out_file.parent.iterdir()] == [out_file.name]  # no temporary left


def test_extract_refuses_a_non_empty_output_folder(dump, tmp_path) -> None:
    out_dir = tmp_path / "extracted"
    (out_dir / "AA").mkdir(parents=True)
    (out_dir / "AA" / "wiki_00").write_text("old")
    with pytest.raises(PipelineError, match="not empty"):
        extract(dump, out_dir, processes=1)
    files = extract(dump, out_dir, processes=1, overwrite=True)
    assert "<doc " in files[0].read_text()


@pytest.mark.parametrize("content", [b"", b"hello, not a dump\n"], ids=["empty", "garbage"])
def test_extract_garbage_dump_is_a_clear_error(tmp_path, content) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(content)
    with pytest.raises(PipelineError, match=r"extraction produced no articles: is .*bad\.xml a"):
        extract(bad, tmp_path / "extracted", processes=1)
    assert list(tmp_path.iterdir()) == [bad]  # no output, no staging folder left


def test_extract_missing_dump(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: WIKIEXTRACTOR_VERSION)
    with pytest.raises(PipelineError, match="does not exist"):
        extract(tmp_path / "missing.xml.bz2", tmp_path / "extracted")


@pytest.mark.parametrize("version", ["3.0.6", "3.0.8"])
def test_extract_wrong_wikiextractor_version(tmp_path, monkeypatch, version) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    dump = tmp_path / "dump.xml"
    dump.write_text("<mediawiki/>")
    with pytest.raises(
        PipelineError, match=rf"found {version}\): pip install wikiextractor==3.1.0"
    ):
        extract(dump, tmp_path / "extracted")
    assert not (tmp_path / "extracted").exists()


def test_extract_wikiextractor_not_installed(tmp_path, monkeypatch) -> None:
    def not_found(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_found)
    with pytest.raises(PipelineError, match=r"not installed\): pip install wikiextractor==3.1.0"):
        extract(tmp_path / "dump.xml", tmp_path / "extracted")


def test_format_articles_rules(tmp_path: Path) -> None:
    _write_docs(
        tmp_path / "extracted" / "AB" / "wiki_00",
        [("Second folder", "Last article.")],
    )
    _write_docs(
        tmp_path / "extracted" / "AA" / "wiki_01",
        [("Third file", "  Padded   line.  \n   \nNext line.")],
    )
    _write_docs(
        tmp_path / "extracted" / "AA" / "wiki_00",
        [("First", "One.\nTwo.\n\n\nThree."), ("Title only", ""), ("Also", "Also here.")],
    )
    out_file = tmp_path / "articles.txt"
    assert format_articles(tmp_path / "extracted", out_file) == 4
    assert out_file.read_text() == (
        "One. Two. Three.\nAlso here.\nPadded   line. Next line.\nLast article.\n"
    )
    listed = [
        tmp_path / "extracted" / "AB" / "wiki_00",
        tmp_path / "extracted" / "AA" / "wiki_00",
        tmp_path / "extracted" / "AA" / "wiki_01",
    ]
    assert format_articles(listed, tmp_path / "listed.txt") == 4
    assert (tmp_path / "listed.txt").read_text() == out_file.read_text()


def test_format_articles_without_articles_is_an_error(tmp_path: Path, caplog) -> None:
    titles_only = _write_docs(tmp_path / "wiki_00", [("Stub", ""), ("Other stub", "")])
    out_file = tmp_path / "out.txt"
    with pytest.raises(PipelineError, match="no articles with text"):
        format_articles(titles_only, out_file)
    assert not out_file.exists() and not list(tmp_path.glob(".out.txt.*"))

    with pytest.raises(PipelineError, match="no extracted files"):
        format_articles(tmp_path / "empty_folder_missing", out_file)

    truncated = tmp_path / "wiki_01"
    truncated.write_text('<doc id="1" url="u" title="A">\nA\n\nText.\n</doc>\n<doc id="2">\nB\nCut')
    with caplog.at_level(logging.WARNING, logger="data.wikipedia"):
        assert format_articles(truncated, out_file) == 1
    assert "ends inside a <doc> block" in caplog.text
