"""Split an extracted page into chunks whose embedded text fits the model's token budget."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from skr.domain.errors import InvalidInputError
from skr.domain.models import ChunkDraft, ChunkKind, ExtractedPage
from skr.ports.embedder import TokenCounter

MAX_TITLE_CHARS = 200
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")

_PARAGRAPH, _LINES, _SENTENCES, _WORDS, _CHARS = range(5)

Fits = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class _Piece:
    """A run of text and the separator that goes before it when it follows another piece."""

    text: str
    joiner: str
    level: int  # how it was cut: _PARAGRAPH, _LINES, _SENTENCES, _WORDS or _CHARS


def chunk_embedding_text(title: str, heading_path: str, text: str) -> str:
    """The exact string SKR embeds for a chunk: title, heading path and text, one per line.

    Empty parts are left out; the title is cut to ``MAX_TITLE_CHARS`` so that one absurd
    ``<title>`` cannot eat the budget of every chunk of its page.
    """
    parts = (" ".join(title.split())[:MAX_TITLE_CHARS], heading_path, text)
    return "\n".join(part for part in parts if part)


def split_into_chunks(
    page: ExtractedPage, counter: TokenCounter, max_tokens: int
) -> list[ChunkDraft]:
    """Text chunks section by section, then one chunk per image that has searchable text.

    The budget applies to what is embedded: for every chunk,
    ``counter.count_tokens(chunk_embedding_text(page.title, chunk.heading_path, chunk.text))``
    is at most ``max_tokens``, and that count is stored as ``ChunkDraft.token_count``. The
    chunk text itself does not repeat the heading path.

    Whole paragraphs are packed while they fit; every heading starts a new chunk. A paragraph
    too long for a chunk is cut into lines, then sentences, then words, then characters, as
    far as needed. A heading path too long for the budget is shortened (last heading, then
    fewer words) for the chunks of that section. Image chunks have no heading path and keep
    as much of the image's searchable text as fits.
    """
    if max_tokens < 1:
        raise InvalidInputError(f"max_tokens must be at least 1, got {max_tokens}")
    drafts: list[ChunkDraft] = []
    for heading_path, section_text in page.sections:
        heading = _fitting_heading(page.title, heading_path, counter, max_tokens)
        budget = _Budget(counter, page.title, heading, max_tokens)
        pieces = [_Piece(p, "\n\n", _PARAGRAPH) for p in section_text.split("\n\n")]
        drafts += [_draft(len(drafts) + i, budget, t) for i, t in enumerate(_pack(pieces, budget))]
    for image in page.images:
        searchable = image.searchable_text().strip()
        if searchable:
            budget = _Budget(counter, page.title, "", max_tokens)
            text = _pack([_Piece(searchable, "", _PARAGRAPH)], budget)[0]
            draft = _draft(len(drafts), budget, text)
            drafts.append(replace(draft, kind=ChunkKind.IMAGE, image=image))
    return drafts


@dataclass(frozen=True, slots=True)
class _Budget:
    """The token budget of one section's chunks: the whole embedded string must fit.

    Counts are remembered: a chunk's text is counted when its end is confirmed and again
    for its draft, and tokenizing is most of what chunking costs, the second count a good
    part of it (docs/benchmarks/history.md, "Crawling the Flask docs", 2026-11-28)."""

    counter: TokenCounter
    title: str
    heading: str
    max_tokens: int
    counted: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def count(self, text: str) -> int:
        tokens = self.counted.get(text)
        if tokens is None:
            embedded = chunk_embedding_text(self.title, self.heading, text)
            tokens = self.counted[text] = self.counter.count_tokens(embedded)
        return tokens

    def fits(self, text: str) -> bool:
        return self.count(text) <= self.max_tokens


def _draft(ordinal: int, budget: _Budget, text: str) -> ChunkDraft:
    tokens = budget.count(text)
    return ChunkDraft(ordinal=ordinal, text=text, heading_path=budget.heading, token_count=tokens)


def _fitting_heading(title: str, heading: str, counter: TokenCounter, max_tokens: int) -> str:
    """The heading path, shortened until title and heading leave half the budget to the text.

    Whole path first, then its last heading, then fewer of its words, down to nothing.
    """
    fits = _Budget(counter, title, "", max_tokens - max_tokens // 2).fits
    if fits(heading):
        return heading
    last = heading.rpartition(" > ")[2]
    if fits(last):
        return last
    words = last.split()
    return " ".join(words[: _longest_prefix(len(words), lambda n: fits(" ".join(words[:n])))])


class _Run:
    """The pieces of one section, each piece's own token count, and the cuts made so far."""

    def __init__(self, pieces: list[_Piece], budget: _Budget) -> None:
        self.pieces = list(pieces)
        self.costs: list[int | None] = [None] * len(pieces)
        self.budget = budget
        self.overhead = budget.count("")

    def cost(self, index: int) -> int:
        cost = self.costs[index]
        if cost is None:
            cost = self.costs[index] = self.budget.counter.count_tokens(self.pieces[index].text)
        return cost

    def cut(self, index: int) -> None:
        parts = _split(self.pieces[index], self.budget.fits)
        self.pieces[index : index + 1] = parts
        self.costs[index : index + 1] = [None] * len(parts)

    def guess_stop(self, start: int) -> int | None:
        """Where the chunk from ``start`` ends if tokens add up; None after cutting a piece."""
        total, stop = self.overhead, start
        while stop < len(self.pieces):
            cost = self.cost(stop)
            if self.overhead + cost > self.budget.max_tokens and self.pieces[stop].level < _CHARS:
                self.cut(stop)  # too long for any chunk: cut it now so it fills this one
                return None
            if stop > start and total + cost > self.budget.max_tokens:
                break
            total, stop = total + cost, stop + 1
        return stop

    def confirm_stop(self, start: int, stop: int) -> int:
        """The guess if the real count agrees, else the longest run that really fits."""
        if self.budget.fits(self.join(start, stop)):
            return stop
        fits = self.budget.fits
        return start + _longest_prefix(stop - start, lambda n: fits(self.join(start, start + n)))

    def join(self, start: int, stop: int) -> str:
        parts = [self.pieces[start].text]
        parts += [piece.joiner + piece.text for piece in self.pieces[start + 1 : stop]]
        return "".join(parts)


def _pack(pieces: list[_Piece], budget: _Budget) -> list[str]:
    """Greedy packing: each chunk takes as many pieces as fit, cutting only pieces too long
    for any chunk. Each piece is counted once and one real count confirms each chunk."""
    run = _Run(pieces, budget)
    chunks: list[str] = []
    start = 0
    while start < len(run.pieces):
        guess = run.guess_stop(start)
        stop = start if guess is None else run.confirm_stop(start, guess)
        if stop == start:
            if guess is not None:
                run.cut(start)
            continue
        joined = run.join(start, stop)
        text = joined.strip("\n").rstrip()
        if text != joined and not budget.fits(text):
            text = joined  # trimming whitespace is cosmetic; never let it break the budget
        if text.strip():
            chunks.append(text)
        start = stop
    return chunks


def _split(piece: _Piece, fits: Fits) -> list[_Piece]:
    """Cut a piece that does not fit at the next finer boundary that actually cuts it."""
    splitters: list[tuple[int, str, Callable[[str], list[str]]]] = [
        (_LINES, "\n", lambda text: text.split("\n")),
        (_SENTENCES, " ", _SENTENCE_END.split),
        (_WORDS, " ", str.split),
    ]
    for level, joiner, splitter in splitters:
        parts = splitter(piece.text) if level > piece.level else []
        if len(parts) > 1:
            first = _Piece(parts[0], piece.joiner, level)
            return [first, *(_Piece(part, joiner, level) for part in parts[1:])]
    return _split_characters(piece, fits)


def _split_characters(piece: _Piece, fits: Fits) -> list[_Piece]:
    text = piece.text
    parts: list[str] = []
    while text:
        size = _longest_prefix(len(text), _prefix_fits(text, fits))
        if size == 0:
            raise InvalidInputError("the page title leaves no room for text in a chunk")
        parts.append(text[:size])
        text = text[size:]
    return [_Piece(part, piece.joiner if i == 0 else "", _CHARS) for i, part in enumerate(parts)]


def _prefix_fits(text: str, fits: Fits) -> Callable[[int], bool]:
    return lambda size: fits(text[:size])


def _longest_prefix(limit: int, fits_first: Callable[[int], bool]) -> int:
    """The largest ``n <= limit`` with ``fits_first(n)``, assuming it only turns false once.

    Gallops then bisects, so a long run of tiny pieces costs O(log n) token counts.
    """
    good, step = 0, 1
    while True:
        probe = min(good + step, limit)
        if probe == good:
            return good
        if not fits_first(probe):
            break
        good, step = probe, step * 2
    bad = probe
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits_first(middle) else (good, middle)
    return good
