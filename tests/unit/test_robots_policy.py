"""RobotsPolicy: group choice, longest-match rules, delays, sitemaps and hostile robots.txt files."""

from __future__ import annotations

import os
import random
import time

import pytest
from protego import Protego

from skr.domain.errors import InvalidInputError
from skr.services.crawl import robots_policy
from skr.services.crawl.robots_policy import MAX_ROBOTS_BYTES, RobotsPolicy, user_agent_token

SKR_UA = "SKR/0.1 (+https://github.com/skr-project/skr; Smart Knowledge Repository)"
SITE = "https://example.com"


def _allowed(robots_txt: str | bytes, path: str, user_agent: str = SKR_UA) -> bool:
    return RobotsPolicy.parse(robots_txt, user_agent).allowed(SITE + path)


PRECEDENCE = """
User-agent: *
Disallow: /private/
Allow: /private/public/
Disallow: /private/public/secret
Allow: /page
Disallow: /page
Disallow: /tmp
Allow: /tmp/ok.html
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", True),
        ("/about", True),
        ("/private", True),
        ("/private/", False),
        ("/private/x.html", False),
        ("/private/public/", True),
        ("/private/public/doc.html", True),
        ("/private/public/secret", False),
        ("/private/public/secret/more", False),
        ("/page", True),  # equal length: Allow wins the tie
        ("/tmp", False),
        ("/tmpfile", False),
        ("/tmp/ok.html", True),
        ("/tmp/ok.htm", False),
        ("/robots.txt", True),
    ],
)
def test_longest_match_decides_and_allow_wins_ties(path: str, expected: bool) -> None:
    assert _allowed(PRECEDENCE, path) is expected


WILDCARDS = """
User-agent: *
Disallow: /*.pdf$
Disallow: /search*q=
Disallow: /*/print/
Disallow: /exact$
Allow: /docs/*.pdf$
Disallow: /*?sessionid=
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/file.pdf", False),
        ("/a/b/file.pdf", False),
        ("/file.pdf?download=1", True),
        ("/file.pdfx", True),
        ("/docs/manual.pdf", True),
        ("/search?q=x", False),
        ("/search/advanced?lang=en&q=x", False),
        ("/search?lang=en", True),
        ("/blog/print/1", False),
        ("/print/1", True),
        ("/exact", False),
        ("/exact/", True),
        ("/exactly", True),
        ("/page?sessionid=42", False),
        ("/page?id=42", True),
    ],
)
def test_wildcards_and_end_anchor(path: str, expected: bool) -> None:
    assert _allowed(WILDCARDS, path) is expected


def test_percent_encoding_is_compared_normalised() -> None:
    robots = "User-agent: *\nDisallow: /caf%C3%A9\nDisallow: /a%2fb\n"
    assert not _allowed(robots, "/café")
    assert not _allowed(robots, "/caf%c3%a9/menu")
    assert not _allowed(robots, "/a%2Fb")
    assert _allowed(robots, "/a/b")


GROUPS = """
User-agent: *
Disallow: /everyone-else/

User-agent: skr
Disallow: /not-for-skr/
Crawl-delay: 3

User-agent: SKRbot
Disallow: /not-for-skrbot/

User-agent: Googlebot
Disallow: /
"""


def test_the_group_naming_skr_is_chosen_case_insensitively() -> None:
    for user_agent in (SKR_UA, "SKR", "skr", "Skr/2.0"):
        policy = RobotsPolicy.parse(GROUPS, user_agent)
        assert not policy.allowed(SITE + "/not-for-skr/x")
        # Only one group applies: the "*" rules do not add to SKR's.
        assert policy.allowed(SITE + "/everyone-else/x")
        assert policy.allowed(SITE + "/not-for-skrbot/x")
        assert policy.crawl_delay() == 3.0


def test_a_longer_name_is_not_skrs_group_and_the_star_group_applies_otherwise() -> None:
    robots = "User-agent: SKRbot\nDisallow: /\n\nUser-agent: *\nDisallow: /star/\n"
    policy = RobotsPolicy.parse(robots, SKR_UA)
    assert policy.allowed(SITE + "/page")
    assert not policy.allowed(SITE + "/star/page")


def test_the_star_group_applies_when_no_group_names_skr() -> None:
    robots = "User-agent: Googlebot\nDisallow: /g/\n\nUser-agent: *\nDisallow: /all/\n"
    policy = RobotsPolicy.parse(robots, SKR_UA)
    assert not policy.allowed(SITE + "/all/x")
    assert policy.allowed(SITE + "/g/x")


def test_no_matching_group_means_no_rules() -> None:
    robots = "User-agent: Googlebot\nDisallow: /\n"
    assert _allowed(robots, "/anything")


def test_grouped_user_agents_share_rules_and_repeated_groups_merge() -> None:
    robots = (
        "User-agent: otherbot\nUser-agent: SKR\nDisallow: /shared/\n\n"
        "User-agent: *\nDisallow: /\n\n"
        "User-agent: skr\nDisallow: /later/\n"
    )
    assert not _allowed(robots, "/shared/x")
    assert not _allowed(robots, "/later/x")
    assert _allowed(robots, "/elsewhere")
    assert not _allowed(robots, "/elsewhere", user_agent="somebot")


def test_rules_before_any_user_agent_are_ignored() -> None:
    assert _allowed("Disallow: /\n", "/page")


def test_disallow_all_and_empty_disallow() -> None:
    assert not _allowed("User-agent: *\nDisallow: /\n", "/")
    assert not _allowed("User-agent: *\nDisallow: /\n", "/deep/page?x=1")
    assert _allowed("User-agent: *\nDisallow:\n", "/page")


def test_comments_blank_lines_and_line_endings_are_tolerated() -> None:
    robots = "# hello\r\nUser-agent: *   # all\r\n\r\nDisallow: /a # not /b\rDisallow: /c\n"
    assert not _allowed(robots, "/a")
    assert _allowed(robots, "/b")
    assert not _allowed(robots, "/c")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("Crawl-delay: 2", 2.0),
        ("Crawl-delay: 0.5", 0.5),
        ("Crawl-delay: 0", 0.0),
        ("Crawl-delay: soon", None),
        ("Crawl-delay: -1", None),
        ("Crawl-delay: nan", None),
        ("Crawl-delay: inf", None),
        ("Request-rate: 1/5", 5.0),
        ("Request-rate: 2/1m", 30.0),
        ("Request-rate: 1/10s 0600-0845", 10.0),
        ("Request-rate: 0/5", None),
        ("Request-rate: many", None),
        ("Crawl-delay: 2\nRequest-rate: 1/10", 10.0),
        ("Crawl-delay: 20\nRequest-rate: 1/10", 20.0),
        ("", None),
    ],
)
def test_crawl_delay_and_request_rate(lines: str, expected: float | None) -> None:
    policy = RobotsPolicy.parse(f"User-agent: *\n{lines}\nDisallow: /x\n", SKR_UA)
    assert policy.crawl_delay() == expected


def test_crawl_delay_comes_from_skrs_group() -> None:
    robots = "User-agent: *\nCrawl-delay: 10\n\nUser-agent: SKR\nCrawl-delay: 1\n"
    assert RobotsPolicy.parse(robots, SKR_UA).crawl_delay() == 1.0
    assert RobotsPolicy.parse(robots, "otherbot").crawl_delay() == 10.0


def test_sitemaps_are_site_wide_deduplicated_and_in_order() -> None:
    robots = (
        "Sitemap: https://example.com/sitemap.xml\n"
        "User-agent: Googlebot\nSitemap: https://example.com/news.xml\nDisallow: /\n"
        "sitemap: https://example.com/sitemap.xml\n"
        "Sitemap https://cdn.example.com/sitemap_index.xml\n"
    )
    assert RobotsPolicy.parse(robots, SKR_UA).sitemaps() == [
        "https://example.com/sitemap.xml",
        "https://example.com/news.xml",
        "https://cdn.example.com/sitemap_index.xml",
    ]


@pytest.mark.parametrize("content", ["", b"", "\n\n", b"\xef\xbb\xbf", "   # only a comment\n"])
def test_an_empty_file_allows_everything(content: str | bytes) -> None:
    policy = RobotsPolicy.parse(content, SKR_UA)
    assert policy.allowed(SITE + "/anything")
    assert policy.crawl_delay() is None
    assert policy.sitemaps() == []


def test_a_byte_order_mark_does_not_hide_the_first_line() -> None:
    robots = b"\xef\xbb\xbfUser-agent: *\nDisallow: /private/\n"
    assert not _allowed(robots, "/private/x")


def test_garbage_bytes_are_tolerated_and_rules_around_them_kept() -> None:
    robots = (
        b"User-agent: *\n\xff\xfe\x00\x80garbage\x00\n"
        b"Disallow: /private/\n\xc3\x28\xa0\xa1\n"
        b"Disallow: /caf\xe9/\n"  # Latin-1, not UTF-8
        b"Sitemap: https://example.com/s.xml\n"
    )
    policy = RobotsPolicy.parse(robots, SKR_UA)
    assert not policy.allowed(SITE + "/private/x")
    assert policy.allowed(SITE + "/public/x")
    assert policy.sitemaps() == ["https://example.com/s.xml"]


def test_random_bytes_never_raise() -> None:
    rng = random.Random(9309)
    for _ in range(200):
        noise = rng.randbytes(rng.randint(0, 4000))
        policy = RobotsPolicy.parse(b"User-agent: *\n" + noise + b"\nDisallow: /x\n", SKR_UA)
        assert isinstance(policy.allowed(SITE + "/page"), bool)
        policy.crawl_delay()
        policy.sitemaps()


def test_an_html_error_page_served_as_robots_txt_allows_everything() -> None:
    html = "<!doctype html><html><head><title>Not found</title></head><body>Oops</body></html>"
    assert _allowed(html, "/page")


def test_a_1_mb_file_is_truncated_at_500_kib_quickly() -> None:
    line = "Disallow: /blocked-{:08d}/\n"
    rules = "".join(line.format(i) for i in range(1_100_000 // len(line.format(0))))
    robots = ("User-agent: *\n" + rules + "Disallow: /after-the-cap/\n").encode()
    assert len(robots) > 1_000_000
    started = time.perf_counter()
    policy = RobotsPolicy.parse(robots, SKR_UA)
    assert not policy.allowed(SITE + "/blocked-00000001/x")
    assert policy.allowed(SITE + "/after-the-cap/x")
    assert time.perf_counter() - started < 5.0
    last_kept = (MAX_ROBOTS_BYTES - len("User-agent: *\n")) // len(line.format(0)) - 1
    assert not policy.allowed(SITE + f"/blocked-{last_kept:08d}/")
    assert policy.allowed(SITE + f"/blocked-{last_kept + 1:08d}/")


def test_a_rule_cut_in_half_at_the_cap_is_dropped() -> None:
    head = "User-agent: *\nDisallow: /private/\n"
    filler = "#" * (MAX_ROBOTS_BYTES - len(head) - len("\nAllow: /private/"))
    robots = head + filler + "\nAllow: /private/public-docs/\n"
    naive = robots.encode()[:MAX_ROBOTS_BYTES].decode()
    assert naive.endswith("\nAllow: /private/")
    # Read whole, "Allow: /private/" would tie with the Disallow and win: the line must go.
    assert Protego.parse(naive).can_fetch(SITE + "/private/secret", "SKR")
    assert not _allowed(robots, "/private/secret")
    assert not _allowed(robots, "/private/public-docs/")


def test_a_huge_str_is_capped_by_its_encoded_size() -> None:
    robots = "User-agent: *\nDisallow: /x\n" + "# é" * MAX_ROBOTS_BYTES + "\nDisallow: /y\n"
    policy = RobotsPolicy.parse(robots, SKR_UA)
    assert not policy.allowed(SITE + "/x")
    assert policy.allowed(SITE + "/y")


def test_a_cap_with_no_line_break_keeps_nothing() -> None:
    robots = b"User-agent: * " + os.urandom(16) * (MAX_ROBOTS_BYTES // 8)
    assert _allowed(robots.replace(b"\n", b" ").replace(b"\r", b" "), "/x")


def test_allowed_accepts_paths_and_absolute_urls() -> None:
    policy = RobotsPolicy.parse("User-agent: *\nDisallow: /p\n", SKR_UA)
    assert not policy.allowed("/p/x")
    assert not policy.allowed("https://example.com/p/x#frag")
    assert policy.allowed("https://example.com/q?p")


def test_allowed_refuses_an_unparsable_url() -> None:
    policy = RobotsPolicy.parse("User-agent: *\nDisallow: /p\n", SKR_UA)
    with pytest.raises(InvalidInputError):
        policy.allowed("http://[::1/x y")


def test_allow_all_and_deny_all() -> None:
    allow, deny = RobotsPolicy.allow_all(), RobotsPolicy.deny_all()
    for path in ("/", "/private/x", "/robots.txt"):
        assert allow.allowed(SITE + path)
        assert not deny.allowed(SITE + path)
    for policy in (allow, deny):
        assert policy.crawl_delay() is None
        assert policy.sitemaps() == []


@pytest.mark.parametrize(
    ("user_agent", "token"),
    [
        (SKR_UA, "SKR"),
        ("SKR", "SKR"),
        ("  SKR/0.1", "SKR"),
        ("skr-crawler/2 (x)", "skr-crawler"),
        ("my_bot", "my_bot"),
        ("SKR2/1.0", "SKR"),
        ("Mozilla/5.0 (compatible; SKR/0.1)", "Mozilla"),
    ],
)
def test_user_agent_token(user_agent: str, token: str) -> None:
    assert user_agent_token(user_agent) == token


@pytest.mark.parametrize("user_agent", ["", "   ", "/0.1", "0.1 SKR", "(SKR)"])
def test_user_agent_token_refuses_a_user_agent_without_one(user_agent: str) -> None:
    with pytest.raises(InvalidInputError):
        user_agent_token(user_agent)
    with pytest.raises(InvalidInputError):
        RobotsPolicy.parse("User-agent: *\n", user_agent)


def test_public_api_is_pinned() -> None:
    assert sorted(robots_policy.__all__) == ["MAX_ROBOTS_BYTES", "RobotsPolicy", "user_agent_token"]
