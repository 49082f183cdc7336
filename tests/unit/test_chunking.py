"""split_into_chunks: whole paragraphs per chunk, finer cuts only when needed, hard budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from skr.domain.errors import InvalidInputError
from skr.domain.models import ChunkDraft, ChunkKind, ExtractedPage, ImageInfo
from skr.services.chunking import MAX_TITLE_CHARS, chunk_embedding_text, split_into_chunks
from skr.services.extraction.html import extract_page

FLASK_DOCS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sites" / "flask-docs"


class WordCounter:
    """One token per whitespace-separated word."""

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class CharCounter:
    """One token per non-space character: lets a single word overflow the budget."""

    def count_tokens(self, text: str) -> int:
        return len("".join(text.split()))


def _page(
    sections: list[tuple[str, str]], images: list[ImageInfo] | None = None, title: str = "T"
) -> ExtractedPage:
    text = "\n\n".join(body for _, body in sections)
    return ExtractedPage(title=title, text=text, sections=sections, images=images or [], links=[])


def _words(count: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


def _assert_within_budget(
    drafts: list[ChunkDraft], title: str, counter: WordCounter | CharCounter, max_tokens: int
) -> None:
    for draft in drafts:
        embedded = chunk_embedding_text(title, draft.heading_path, draft.text)
        assert draft.token_count == counter.count_tokens(embedded)
        assert draft.token_count <= max_tokens
    assert [draft.ordinal for draft in drafts] == list(range(len(drafts)))


def test_embedding_text_is_title_heading_and_text_on_lines() -> None:
    assert chunk_embedding_text("Quickstart", "Quickstart > Routing", "body") == (
        "Quickstart\nQuickstart > Routing\nbody"
    )
    assert chunk_embedding_text("Title", "", "body") == "Title\nbody"
    assert chunk_embedding_text("x" * 1000, "", "") == "x" * MAX_TITLE_CHARS


def test_empty_page_gives_no_chunks() -> None:
    assert split_into_chunks(_page([]), WordCounter(), 64) == []


def test_whole_paragraphs_are_packed_while_they_fit() -> None:
    paragraphs = ["a b c", "d e f", "g h i", "j k l"]
    page = _page([("H", "\n\n".join(paragraphs))])

    # title (1) + heading (1) + two paragraphs (6) = 8 fits in 10; three would be 11
    drafts = split_into_chunks(page, WordCounter(), 10)

    assert [d.text for d in drafts] == ["a b c\n\nd e f", "g h i\n\nj k l"]
    assert {d.heading_path for d in drafts} == {"H"}
    _assert_within_budget(drafts, "T", WordCounter(), 10)


def test_every_heading_starts_a_new_chunk() -> None:
    page = _page([("A", "one two"), ("A > B", "three four"), ("C", "five")])

    drafts = split_into_chunks(page, WordCounter(), 100)

    assert [(d.heading_path, d.text) for d in drafts] == [
        ("A", "one two"),
        ("A > B", "three four"),
        ("C", "five"),
    ]
    assert all(d.kind is ChunkKind.TEXT and d.image is None for d in drafts)


def test_long_paragraph_is_cut_at_sentences() -> None:
    sentences = [f"Sentence {i} has five words." for i in range(6)]
    page = _page([("H", " ".join(sentences))])

    drafts = split_into_chunks(page, WordCounter(), 12)  # 2 + two sentences of five

    assert [d.text for d in drafts] == [" ".join(sentences[i : i + 2]) for i in (0, 2, 4)]
    _assert_within_budget(drafts, "T", WordCounter(), 12)


def test_long_sentence_is_cut_at_words() -> None:
    page = _page([("H", _words(50))])

    drafts = split_into_chunks(page, WordCounter(), 12)

    assert [d.text for d in drafts][:2] == [_words(10), " ".join(f"w{i}" for i in range(10, 20))]
    assert " ".join(d.text for d in drafts).split() == _words(50).split()
    _assert_within_budget(drafts, "T", WordCounter(), 12)


def test_a_word_longer_than_the_budget_is_cut_into_characters() -> None:
    page = _page([("H", "x" * 100)])

    drafts = split_into_chunks(page, CharCounter(), 30)  # title and heading take 2

    assert "".join(d.text for d in drafts) == "x" * 100
    assert max(len(d.text) for d in drafts) == 28
    _assert_within_budget(drafts, "T", CharCounter(), 30)


def test_code_is_cut_at_lines_and_keeps_them() -> None:
    lines = [f"line_{i} = call({i})" for i in range(30)]
    page = _page([("H", "Intro text here.\n\n" + "\n".join(lines))])

    # 2 for title and heading, 3 for the intro, then three-word lines
    drafts = split_into_chunks(page, WordCounter(), 20)

    assert [d.text for d in drafts] == [
        "Intro text here.\n\n" + "\n".join(lines[:5]),
        *("\n".join(lines[i : i + 6]) for i in range(5, 30, 6)),
    ]
    _assert_within_budget(drafts, "T", WordCounter(), 20)


def test_a_long_paragraph_fills_the_open_chunk_first() -> None:
    sentences = [f"Sentence {i} has five words." for i in range(4)]
    page = _page([("H", "Short intro.\n\n" + " ".join(sentences))])

    drafts = split_into_chunks(page, WordCounter(), 14)  # 2 + 2 + two sentences

    assert [d.text for d in drafts] == [
        f"Short intro.\n\n{sentences[0]} {sentences[1]}",
        f"{sentences[2]} {sentences[3]}",
    ]


def test_nothing_is_lost_on_a_mixed_page() -> None:
    long_paragraph = " ".join(f"Sentence {i} is here with {_words(i % 40)}." for i in range(60))
    sections = [("A", f"short one\n\n{long_paragraph}\n\nshort two"), ("A > B", _words(500))]
    page = _page(sections, title="A Title")

    for max_tokens in (16, 37, 64, 256):
        drafts = split_into_chunks(page, WordCounter(), max_tokens)
        _assert_within_budget(drafts, "A Title", WordCounter(), max_tokens)
        for path, body in sections:
            texts = [d.text for d in drafts if d.heading_path == path]
            assert " ".join(texts).split() == body.split()


def test_a_heading_path_too_long_for_the_budget_is_shortened() -> None:
    heading = f"{_words(10, 'a')} > {_words(10, 'b')}"
    page = _page([(heading, _words(30))])

    drafts = split_into_chunks(page, WordCounter(), 16)

    assert {d.heading_path for d in drafts} == {_words(7, "b")}  # 1 + 7 words leave half
    _assert_within_budget(drafts, "T", WordCounter(), 16)


def test_images_follow_the_text_chunks() -> None:
    images = [
        ImageInfo(src="https://e.com/a.png", alt="An architecture diagram", caption="Figure 1"),
        ImageInfo(src="https://e.com/empty.png"),
        ImageInfo(src="https://e.com/b.png", surrounding_text=_words(100)),
    ]
    page = _page([("H", "some text")], images=images)

    drafts = split_into_chunks(page, WordCounter(), 20)

    assert [d.kind for d in drafts] == [ChunkKind.TEXT, ChunkKind.IMAGE, ChunkKind.IMAGE]
    assert [d.ordinal for d in drafts] == [0, 1, 2]
    assert drafts[1].image == images[0]
    assert drafts[1].text == "An architecture diagram\nFigure 1"
    assert drafts[1].heading_path == ""
    assert drafts[2].image == images[2]
    assert drafts[2].text == _words(19)  # trimmed: the title takes one token
    _assert_within_budget(drafts, "T", WordCounter(), 20)


def test_invalid_budgets_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        split_into_chunks(_page([("H", "text")]), WordCounter(), 0)
    with pytest.raises(InvalidInputError, match="title"):
        split_into_chunks(_page([("H", "text")], title=_words(20)), WordCounter(), 8)


@pytest.mark.skipif(not FLASK_DOCS.is_dir(), reason="the shared Flask docs are not on this machine")
def test_real_tokenizer_keeps_every_flask_chunk_within_256_tokens() -> None:
    from skr.adapters.minilm_wordpiece import MiniLMTokenizer

    counter = MiniLMTokenizer.bundled()  # the tokenizer the ONNX embedder counts with
    url = "https://flask.palletsprojects.com/en/2.2.x/quickstart.html"
    page = extract_page((FLASK_DOCS / "quickstart.html").read_bytes(), url)

    drafts = split_into_chunks(page, counter, 256)

    assert len(drafts) > len(page.sections)
    for draft in drafts:
        embedded = chunk_embedding_text(page.title, draft.heading_path, draft.text)
        assert draft.token_count == counter.count_tokens(embedded) <= 256
    text_words = [w for d in drafts if d.kind is ChunkKind.TEXT for w in d.text.split()]
    assert text_words == [w for _, body in page.sections for w in body.split()]
    assert any(d.kind is ChunkKind.IMAGE for d in drafts)
