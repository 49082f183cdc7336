"""normalize_url, same_site and pick_canonical: one spelling per page, scope and canonical links."""

from __future__ import annotations

import pytest

from skr.domain.errors import InvalidInputError
from skr.services.crawl import url_normalization
from skr.services.crawl.url_normalization import (
    MAX_URL_LENGTH,
    TRACKING_PARAMETERS,
    TRACKING_PREFIXES,
    normalize_url,
    pick_canonical,
    same_site,
)

# (input, expected)
NORMALIZED = [
    # scheme and host case, default ports
    ("HTTP://Example.COM/Path", "http://example.com/Path"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("http://example.com:443/a", "http://example.com:443/a"),
    ("https://example.com:80/a", "https://example.com:80/a"),
    ("http://example.com:8080/a", "http://example.com:8080/a"),
    ("http://example.com:0080/a", "http://example.com/a"),
    ("http://example.com:/a", "http://example.com/a"),
    ("http://example.com./a", "http://example.com/a"),
    # empty path, fragments, trailing slash policy
    ("http://example.com", "http://example.com/"),
    ("http://example.com?b=1", "http://example.com/?b=1"),
    ("http://example.com/a#section-2", "http://example.com/a"),
    ("http://example.com/#", "http://example.com/"),
    ("http://example.com/#!/ajax/route", "http://example.com/"),
    ("http://example.com/docs/", "http://example.com/docs/"),
    ("http://example.com/docs", "http://example.com/docs"),
    ("http://example.com/index.html", "http://example.com/index.html"),
    ("http://example.com/docs/index.html", "http://example.com/docs/index.html"),
    ("http://example.com/a//b", "http://example.com/a//b"),
    # dot segments
    ("http://example.com/a/./b/../c", "http://example.com/a/c"),
    ("http://example.com/a/b/..", "http://example.com/a/"),
    ("http://example.com/a/.", "http://example.com/a/"),
    ("http://example.com/../../etc/passwd", "http://example.com/etc/passwd"),
    ("http://example.com/a/%2E%2e/b", "http://example.com/b"),
    ("http://example.com/a/.../b", "http://example.com/a/.../b"),
    ("http://example.com/a/.hidden", "http://example.com/a/.hidden"),
    # percent-encoding
    ("http://example.com/%7Euser/%41%62c", "http://example.com/~user/Abc"),
    ("http://example.com/a%2fb%2Fc", "http://example.com/a%2Fb%2Fc"),
    ("http://example.com/a%3ab", "http://example.com/a%3Ab"),
    ("http://example.com/100%", "http://example.com/100%25"),
    ("http://example.com/%zz", "http://example.com/%25zz"),
    ("http://example.com/a b", "http://example.com/a%20b"),
    ("http://example.com/café", "http://example.com/caf%C3%A9"),
    ("http://example.com/caf%c3%a9", "http://example.com/caf%C3%A9"),
    ("http://example.com/<script>", "http://example.com/%3Cscript%3E"),
    ("http://example.com/a;b=c,d:e@f!$'()*+", "http://example.com/a;b=c,d:e@f!$'()*+"),
    ("http://example.com/a\x00b", "http://example.com/a%00b"),
    ("http://example.com/?q=a+b&r=%20", "http://example.com/?q=a+b&r=%20"),
    ("http://example.com/?q=%7e%2f%26", "http://example.com/?q=~%2F%26"),
    ("http://example.com/?q=é", "http://example.com/?q=%C3%A9"),
    # query: tracking parameters, sorting, empties
    ("http://example.com/?utm_source=x&utm_medium=y&id=3", "http://example.com/?id=3"),
    ("http://example.com/?UTM_Campaign=x&id=3", "http://example.com/?id=3"),
    ("http://example.com/?gclid=1&fbclid=2&mc_cid=3&mc_eid=4", "http://example.com/"),
    ("http://example.com/?msclkid=1&_ga=2&yclid=3&igshid=4&ref_src=5", "http://example.com/"),
    ("http://example.com/?utm%5Fsource=x&a=1", "http://example.com/?a=1"),
    ("http://example.com/?utmost=1", "http://example.com/?utmost=1"),
    ("http://example.com/?ref=home&src=1", "http://example.com/?ref=home&src=1"),
    ("http://example.com/?b=2&a=1&c=3", "http://example.com/?a=1&b=2&c=3"),
    ("http://example.com/?a=2&b=1&a=1", "http://example.com/?a=2&a=1&b=1"),
    ("http://example.com/?a=1&&b=2&", "http://example.com/?a=1&b=2"),
    ("http://example.com/?", "http://example.com/"),
    ("http://example.com/?flag&a=1", "http://example.com/?a=1&flag"),
    ("http://example.com/p?x=1?y=2", "http://example.com/p?x=1?y=2"),
    # whitespace and controls as browsers treat them
    ("  http://example.com/a  ", "http://example.com/a"),
    ("\x01http://example.com/a\x1f", "http://example.com/a"),
    ("http://exa\tmple.com/a\n/b\r", "http://example.com/a/b"),
    # userinfo is dropped
    ("http://user:secret@example.com/a", "http://example.com/a"),
    ("http://example.com:80@evil.test/a", "http://evil.test/a"),
    ("http://a@b@example.com/", "http://example.com/"),
    # backslashes before the query are slashes, as in browsers
    ("http://good.test\\@evil.test/", "http://good.test/@evil.test/"),
    ("http://example.com\\a\\b?q=\\", "http://example.com/a/b?q=%5C"),
    # IPv4 and IPv6 hosts
    ("http://127.0.0.1:8000/x", "http://127.0.0.1:8000/x"),
    ("http://[::1]/", "http://[::1]/"),
    ("http://[2001:DB8:0:0:0:0:0:1]:80/a", "http://[2001:db8::1]/a"),
    ("https://[2001:db8::1]:8443/a", "https://[2001:db8::1]:8443/a"),
    # unicode hosts are IDNA-encoded
    ("http://Bücher.de/", "http://xn--bcher-kva.de/"),
    ("http://例え.テスト/", "http://xn--r8jz45g.xn--zckzah/"),
    ("http://ｅｘａｍｐｌｅ.com/", "http://example.com/"),
    ("http://xn--bcher-kva.de/", "http://xn--bcher-kva.de/"),
    ("http://my_host.example.com/", "http://my_host.example.com/"),
]


@pytest.mark.parametrize(("url", "expected"), NORMALIZED)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), NORMALIZED)
def test_normalize_url_is_idempotent(url: str, expected: str) -> None:
    assert normalize_url(expected) == expected


BASE = "https://example.com/docs/guide/page.html?x=1#top"

# (reference, expected), resolved against BASE
RESOLVED = [
    ("intro.html", "https://example.com/docs/guide/intro.html"),
    ("./intro.html", "https://example.com/docs/guide/intro.html"),
    ("../api/", "https://example.com/docs/api/"),
    ("../../../../../../up", "https://example.com/up"),
    ("/root", "https://example.com/root"),
    ("//cdn.example.net/x.png", "https://cdn.example.net/x.png"),
    ("?b=2&a=1", "https://example.com/docs/guide/page.html?a=1&b=2"),
    ("#other", "https://example.com/docs/guide/page.html?x=1"),
    ("", "https://example.com/docs/guide/page.html?x=1"),
    ("https:sibling.html", "https://example.com/docs/guide/sibling.html"),
    ("HTTP://Other.Example.org", "http://other.example.org/"),
    ("  next.html\n", "https://example.com/docs/guide/next.html"),
    ("..\\api\\x", "https://example.com/docs/api/x"),
]


@pytest.mark.parametrize(("reference", "expected"), RESOLVED)
def test_relative_references_resolve_against_the_base(reference: str, expected: str) -> None:
    assert normalize_url(reference, base=BASE) == expected


INVALID = [
    "",
    "   ",
    "\t\n",
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    "mailto:someone@example.com",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "ftp://example.com/file",
    "tel:+15551234",
    "about:blank",
    "/relative/without/base",
    "//example.com/scheme-relative-without-base",
    "example.com/no-scheme",
    "http://",
    "http:///path-only",
    "http://:80/",
    "http://@/",
    "http:example.com",
    "http://example.com:abc/",
    "http://example.com:65536/",
    "http://example.com:0/",
    "http://example.com:-1/",
    "http://example.com:+80/",
    "http://example.com:8_0/",
    "http://example.com:٨٠/",
    "http://example.com:80:80/",
    "http://[::1/",
    "http://[::1]x/",
    "http://[not-ipv6]/",
    "http://[fe80::1%25eth0]/",
    "http://a..b/",
    "http://exa mple.com/",
    "http://exa<mple.com/",
    "http://%65xample.com/",
    "http://" + "a" * 64 + ".com/",
    "http://" + ".".join(["abcdefgh"] * 40) + "/",
    "http://example.com/\ud800",
    "http://example.com/" + "a" * MAX_URL_LENGTH,
    "http://example.com/" + "é" * (MAX_URL_LENGTH // 4),
    "http://example.com/" + "x" * 10_000_000,
]


@pytest.mark.parametrize("url", INVALID, ids=lambda u: repr(u[:40]))
def test_invalid_input_is_refused(url: str) -> None:
    with pytest.raises(InvalidInputError):
        normalize_url(url)


def test_relative_reference_against_a_non_http_base_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        normalize_url("page.html", base="mailto:someone@example.com")
    with pytest.raises(InvalidInputError):
        normalize_url("javascript:void(0)", base=BASE)


def test_error_details_stay_short_for_huge_input() -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalize_url("http://exa mple.com/" + "x" * 5000)
    assert len(caught.value.detail) < 300


def test_a_long_url_under_the_limit_is_kept() -> None:
    url = "http://example.com/" + "a" * (MAX_URL_LENGTH - 100)
    assert normalize_url(url) == url


def test_many_dot_segments_are_handled_in_linear_time() -> None:
    url = "http://example.com/" + "a/../" * 1500 + "end"
    assert normalize_url(url) == "http://example.com/end"


def test_tracking_set_is_the_documented_one() -> None:
    assert {
        "gclid",
        "fbclid",
        "mc_cid",
        "mc_eid",
        "msclkid",
        "_ga",
        "yclid",
        "igshid",
        "ref_src",
    } == TRACKING_PARAMETERS
    assert TRACKING_PREFIXES == ("utm_",)
    assert isinstance(TRACKING_PARAMETERS, frozenset)


def test_public_api_is_pinned() -> None:
    assert sorted(url_normalization.__all__) == [
        "MAX_URL_LENGTH",
        "TRACKING_PARAMETERS",
        "TRACKING_PREFIXES",
        "normalize_url",
        "pick_canonical",
        "same_site",
    ]


ROOT = "https://example.com/docs/"

# (url, same_host, prefix, in scope)
SCOPE = [
    ("https://example.com/other", True, None, True),
    ("http://example.com/other", True, None, True),
    ("HTTPS://EXAMPLE.com:443/x#f", True, None, True),
    ("https://www.example.com/docs/", True, None, False),
    ("https://docs.example.com/", True, None, False),
    ("https://example.com:8443/docs/", True, None, False),
    ("https://example.com.evil.test/docs/", True, None, False),
    ("https://evil.test/?u=https://example.com/", True, None, False),
    ("mailto:a@example.com", True, None, False),
    ("javascript:alert(1)", True, None, False),
    ("", True, None, False),
    ("https://docs.example.com/", False, None, True),
    ("https://a.b.example.com:8080/", False, None, True),
    ("https://notexample.com/", False, None, False),
    ("https://example.com/docs/a", True, "https://example.com/docs/", True),
    ("http://example.com/docs/a", True, "https://example.com/docs/", True),
    ("https://example.com/docs", True, "https://example.com/docs/", False),
    ("https://example.com/blog/", True, "https://example.com/docs/", False),
    ("https://example.com/docs/../blog/", True, "https://example.com/docs/", False),
    ("https://example.com/docs-old/", True, "https://example.com/docs", True),
    ("https://example.com:8443/docs/a", True, "https://example.com/docs/", False),
    ("https://example.com/Docs/a", True, "https://example.com/docs/", False),
    ("https://other.test/docs/a", False, "https://example.com/docs/", False),
]


@pytest.mark.parametrize(("url", "same_host", "prefix", "expected"), SCOPE)
def test_same_site(url: str, same_host: bool, prefix: str | None, expected: bool) -> None:
    assert same_site(url, ROOT, same_host=same_host, prefix=prefix) is expected


def test_same_site_defaults_to_same_host() -> None:
    assert same_site("https://example.com/x", ROOT)
    assert not same_site("https://www.example.com/x", ROOT)


def test_same_site_www_root_also_admits_the_bare_domain_when_not_same_host() -> None:
    root = "https://www.example.com/"
    assert same_site("https://example.com/x", root, same_host=False)
    assert same_site("https://docs.example.com/x", root, same_host=False)
    assert not same_site("https://example.org/x", root, same_host=False)
    # "www.com" must not widen the scope to every ".com" host.
    assert not same_site("https://other.com/", "https://www.com/", same_host=False)


def test_same_site_with_an_ip_root_admits_only_that_address() -> None:
    assert same_site("http://127.0.0.1:9000/a", "http://127.0.0.1:9000/", same_host=True)
    assert not same_site("http://127.0.0.1:9001/a", "http://127.0.0.1:9000/", same_host=True)
    assert same_site("http://127.0.0.1:9001/a", "http://127.0.0.1:9000/", same_host=False)
    assert not same_site("http://1.127.0.0.1/", "http://127.0.0.1/", same_host=False)
    assert same_site("http://[::1]:9000/", "http://[0:0::1]:9000/")


def test_same_site_refuses_an_invalid_root_or_prefix() -> None:
    with pytest.raises(InvalidInputError):
        same_site("https://example.com/", "mailto:x@example.com")
    with pytest.raises(InvalidInputError):
        same_site("https://example.com/", ROOT, prefix="/docs/")


PAGE = "https://example.com/docs/page.html?utm_source=feed"

# (canonical href, expected)
CANONICAL = [
    (None, "https://example.com/docs/page.html"),
    ("", "https://example.com/docs/page.html"),
    ("   ", "https://example.com/docs/page.html"),
    ("https://example.com/docs/page", "https://example.com/docs/page"),
    ("HTTPS://Example.com:443/docs/page#x", "https://example.com/docs/page"),
    ("http://example.com/docs/page", "http://example.com/docs/page"),
    ("/docs/canonical/", "https://example.com/docs/canonical/"),
    ("other.html", "https://example.com/docs/other.html"),
    ("https://example.com/docs/page?utm_campaign=x", "https://example.com/docs/page"),
    ("https://www.example.com/docs/page", "https://example.com/docs/page.html"),
    ("https://evil.test/stolen", "https://example.com/docs/page.html"),
    ("//evil.test/stolen", "https://example.com/docs/page.html"),
    ("https://example.com:8443/docs/page", "https://example.com/docs/page.html"),
    ("javascript:alert(1)", "https://example.com/docs/page.html"),
    ("mailto:x@example.com", "https://example.com/docs/page.html"),
    ("ftp://example.com/docs/page", "https://example.com/docs/page.html"),
    ("http://exa mple.com/", "https://example.com/docs/page.html"),
    ("http://[::1/", "https://example.com/docs/page.html"),
    pytest.param(
        "https://example.com/" + "x" * 10_000_000,
        "https://example.com/docs/page.html",
        id="ten-megabyte-href",
    ),
]


@pytest.mark.parametrize(("href", "expected"), CANONICAL)
def test_pick_canonical(href: str | None, expected: str) -> None:
    assert pick_canonical(PAGE, href) == expected


def test_pick_canonical_refuses_an_invalid_page_url() -> None:
    with pytest.raises(InvalidInputError):
        pick_canonical("javascript:alert(1)", "https://example.com/")
