"""MiniLM's WordPiece tokenizer (shipped in SKR as package data): exact token counts for
the chunker, and model inputs for the embedders."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path

from tokenizers import Tokenizer

from skr.domain.errors import DependencyError

MAX_LENGTH = 256
"""The model's window in tokens, ``[CLS]`` and ``[SEP]`` included (sentence-transformers' value)."""

TokenIds = list[int]


def bundled_tokenizer_file() -> Traversable:
    """MiniLM's ``tokenizer.json``, shipped in SKR as package data (the int8 package has
    none); ``minilm_tokenizer/NOTICE`` says where it came from."""
    return importlib.resources.files("skr.adapters").joinpath("minilm_tokenizer/tokenizer.json")


class MiniLMTokenizer:
    """MiniLM's WordPiece tokenizer: exact counts, and model inputs cut to :data:`MAX_LENGTH`.

    Takes ownership of ``tokenizer``: its own truncation and padding are switched off
    (the packaged ``tokenizer.json`` pads and truncates to 128) and never changed again,
    so one instance may be shared by threads.
    """

    def __init__(self, tokenizer: Tokenizer, *, max_length: int = MAX_LENGTH) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._max_length = max_length
        self._cls_id = _special_id(tokenizer, "[CLS]")
        self._sep_id = _special_id(tokenizer, "[SEP]")

    @classmethod
    def from_file(cls, path: Path | str, *, max_length: int = MAX_LENGTH) -> MiniLMTokenizer:
        tokenizer = _read_tokenizer(lambda: Tokenizer.from_file(str(path)), path)
        return cls(tokenizer, max_length=max_length)

    @classmethod
    def bundled(cls, *, max_length: int = MAX_LENGTH) -> MiniLMTokenizer:
        """The tokenizer shipped in SKR, read from the package's resources (so from a
        wheel or a zip too, with no temporary file)."""
        resource = bundled_tokenizer_file()
        tokenizer = _read_tokenizer(
            lambda: Tokenizer.from_str(resource.read_text(encoding="utf-8")), resource
        )
        return cls(tokenizer, max_length=max_length)

    @property
    def max_tokens(self) -> int:
        """Content tokens that fit beside ``[CLS]`` and ``[SEP]``."""
        return self._max_length - 2

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, without the special tokens and without truncation."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span ``(start, end)`` of each token of ``text`` (special tokens excluded)."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)

    def encode_for_model(self, texts: Sequence[str]) -> list[TokenIds]:
        """Ids for the model: ``[CLS]``, the first :attr:`max_tokens` tokens, ``[SEP]``."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        limit = self.max_tokens
        return [[self._cls_id, *encoding.ids[:limit], self._sep_id] for encoding in encodings]


def _read_tokenizer(read: Callable[[], Tokenizer], source: object) -> Tokenizer:
    try:
        return read()
    except Exception as exc:  # tokenizers raises a plain Exception for any load failure
        raise DependencyError(f"cannot load the tokenizer from {source}: {exc}") from exc


def _special_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise DependencyError(f"the tokenizer has no {token} token; is it a BERT tokenizer?")
    return token_id
