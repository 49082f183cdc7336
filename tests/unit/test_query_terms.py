"""The words keyword search is given: word characters only, distinct, no stop words."""

from __future__ import annotations

from skr.domain.query_terms import MAX_QUERY_TERMS, STOP_WORDS, keyword_terms, query_terms


def test_query_terms_are_distinct_lower_case_words_in_order() -> None:
    assert query_terms('The "Flask" flask; NEAR(x) OR 1=1 --') == [
        "the",
        "flask",
        "near",
        "x",
        "or",
        "1",
    ]
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == MAX_QUERY_TERMS


def test_keyword_terms_leave_out_english_stop_words() -> None:
    claim = "Vitamin D deficiency is associated with the risk of multiple sclerosis."
    assert keyword_terms(claim) == [
        "vitamin",
        "d",
        "deficiency",
        "associated",
        "risk",
        "multiple",
        "sclerosis",
    ]
    assert keyword_terms("How do I register a blueprint?") == ["register", "blueprint"]


def test_a_query_of_stop_words_only_has_no_keyword_terms() -> None:
    assert keyword_terms("To be, or not to be: that is the question") == ["question"]
    assert keyword_terms("to be or not to be") == []
    assert {"the", "of", "and", "is", "s", "t"} <= STOP_WORDS and len(STOP_WORDS) == 127
