"""parse_sitemap: urlsets, indexes, gzip, text sitemaps, lastmod, limits and hostile XML."""

from __future__ import annotations

import dataclasses
import gzip
import subprocess
import sys
import textwrap
import time
import zlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from skr.domain.errors import FetchError
from skr.services.crawl.sitemaps import (
    MAX_SITEMAP_BYTES,
    SitemapDocument,
    SitemapEntry,
    parse_lastmod,
    parse_sitemap,
)

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def _urlset(*entries: str, ns: str | None = NS) -> bytes:
    xmlns = f' xmlns="{ns}"' if ns else ""
    body = "".join(f"<url>{entry}</url>" for entry in entries)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset{xmlns}>{body}</urlset>'.encode()


def _locs(entries: list[SitemapEntry]) -> list[str]:
    return [entry.loc for entry in entries]


def _gzip_stream(total: int, chunk: bytes = b"\0" * (1 << 20)) -> bytes:
    """Gzip ``total`` zero bytes without ever holding them all in memory."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [deflater.compress(chunk) for _ in range(total // len(chunk))]
    parts.append(deflater.compress(chunk[: total % len(chunk)]))
    parts.append(deflater.flush())
    return b"".join(parts)


# --- XML urlset and sitemap index -------------------------------------------------------------


def test_urlset_with_namespace_gives_locs_and_lastmods_in_order() -> None:
    body = _urlset(
        "<loc>https://example.com/</loc><lastmod>2024-05-01</lastmod>",
        "<loc>https://example.com/a</loc><changefreq>daily</changefreq><priority>0.5</priority>",
    )
    doc = parse_sitemap(body)
    assert doc.urls == [
        SitemapEntry("https://example.com/", datetime(2024, 5, 1, tzinfo=UTC)),
        SitemapEntry("https://example.com/a", None),
    ]
    assert doc.sitemaps == []


def test_sitemap_index_lists_child_sitemaps_not_urls() -> None:
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
    <sitemapindex xmlns="{NS}">
      <sitemap><loc>https://example.com/s1.xml.gz</loc><lastmod>2024-01-02T03:04:05Z</lastmod></sitemap>
      <sitemap><loc>https://example.com/s2.xml</loc></sitemap>
    </sitemapindex>""".encode()
    doc = parse_sitemap(body)
    assert doc.urls == []
    assert doc.sitemaps == [
        SitemapEntry("https://example.com/s1.xml.gz", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        SitemapEntry("https://example.com/s2.xml", None),
    ]


@pytest.mark.parametrize("ns", [None, "http://www.google.com/schemas/sitemap/0.84"])
def test_urlset_without_or_with_an_older_namespace(ns: str | None) -> None:
    doc = parse_sitemap(_urlset("<loc>http://example.com/x</loc>", ns=ns))
    assert _locs(doc.urls) == ["http://example.com/x"]


def test_children_without_namespace_under_a_namespaced_root_are_read() -> None:
    body = f'<urlset xmlns:sm="{NS}"><url><loc>http://example.com/x</loc></url></urlset>'
    body_prefixed = f'<sm:urlset xmlns:sm="{NS}"><sm:url><sm:loc>http://example.com/y</sm:loc></sm:url></sm:urlset>'
    assert _locs(parse_sitemap(body.encode()).urls) == ["http://example.com/x"]
    assert _locs(parse_sitemap(body_prefixed.encode()).urls) == ["http://example.com/y"]


def test_mixed_case_tags_are_accepted() -> None:
    body = (
        b"<URLSet><Url><LOC>http://example.com/x</LOC><LastMod>2024-02-03</LastMod></Url></URLSet>"
    )
    assert parse_sitemap(body).urls == [
        SitemapEntry("http://example.com/x", datetime(2024, 2, 3, tzinfo=UTC))
    ]


def test_extension_elements_do_not_become_entries() -> None:
    body = f"""<urlset xmlns="{NS}" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"
        xmlns:xhtml="http://www.w3.org/1999/xhtml" xmlns:other="urn:other">
      <url>
        <loc>https://example.com/page</loc>
        <xhtml:link rel="alternate" hreflang="de" href="https://example.com/de/page"/>
        <image:image><image:loc>https://example.com/pic.png</image:loc></image:image>
        <other:loc>https://example.com/other</other:loc>
      </url>
      <other:url><loc>https://example.com/foreign</loc></other:url>
    </urlset>""".encode()
    assert _locs(parse_sitemap(body).urls) == ["https://example.com/page"]


def test_entries_of_the_other_kind_are_ignored() -> None:
    urlset = _urlset("<loc>https://example.com/a</loc>").replace(
        b"</urlset>", b"<sitemap><loc>https://example.com/s.xml</loc></sitemap></urlset>"
    )
    index = f'<sitemapindex xmlns="{NS}"><url><loc>https://example.com/a</loc></url></sitemapindex>'
    assert parse_sitemap(urlset) == SitemapDocument(urls=[SitemapEntry("https://example.com/a")])
    assert parse_sitemap(index.encode()) == SitemapDocument()


def test_whitespace_around_loc_is_stripped() -> None:
    doc = parse_sitemap(_urlset("<loc>\n\t  https://example.com/a  \n</loc>"))
    assert _locs(doc.urls) == ["https://example.com/a"]


def test_escaped_and_unescaped_ampersands_and_cdata_keep_the_query_whole() -> None:
    doc = parse_sitemap(
        _urlset(
            "<loc>https://example.com/?a=1&amp;b=2</loc>",
            "<loc>https://example.com/?c=1&d=2</loc>",
            "<loc><![CDATA[https://example.com/?e=1&f=2]]></loc>",
        )
    )
    assert _locs(doc.urls) == [
        "https://example.com/?a=1&b=2",
        "https://example.com/?c=1&d=2",
        "https://example.com/?e=1&f=2",
    ]


def test_non_web_and_malformed_locs_are_dropped() -> None:
    bad = [
        "ftp://example.com/f",
        "javascript:alert(1)",
        "mailto:someone@example.com",
        "file:///etc/passwd",
        "/relative/path",
        "http://",
        "http://[::1",
        "https://example.com/has space",
        "https://example.com/" + "a" * 5000,
        "",
    ]
    entries = [f"<loc>{loc}</loc>" for loc in bad] + ["<loc>HTTPS://example.com/ok</loc>", ""]
    assert _locs(parse_sitemap(_urlset(*entries)).urls) == ["HTTPS://example.com/ok"]


def test_duplicate_locs_are_kept_once_with_the_first_lastmod() -> None:
    doc = parse_sitemap(
        _urlset(
            "<loc>https://example.com/a</loc><lastmod>2024-01-01</lastmod>",
            "<loc>https://example.com/b</loc>",
            "<loc> https://example.com/a </loc><lastmod>2025-01-01</lastmod>",
        )
    )
    assert doc.urls == [
        SitemapEntry("https://example.com/a", datetime(2024, 1, 1, tzinfo=UTC)),
        SitemapEntry("https://example.com/b"),
    ]


def test_max_entries_caps_the_kept_entries() -> None:
    body = _urlset(*(f"<loc>https://example.com/{i}</loc>" for i in range(100)))
    assert _locs(parse_sitemap(body, max_entries=10).urls) == [
        f"https://example.com/{i}" for i in range(10)
    ]
    assert parse_sitemap(body, max_entries=0) == SitemapDocument()


def test_default_cap_is_the_protocol_limit() -> None:
    doc = parse_sitemap(_urlset(*(f"<loc>https://example.com/{i}</loc>" for i in range(50_001))))
    assert len(doc.urls) == 50_000
    assert doc.urls[-1].loc == "https://example.com/49999"


def test_parsing_stops_once_the_cap_is_reached() -> None:
    big = _urlset(*(f"<loc>https://example.com/{i}?a=1&b=2</loc>" for i in range(300_000)))
    assert len(big) > 10 * 1024 * 1024
    started = time.perf_counter()
    doc = parse_sitemap(big, max_entries=10)
    assert time.perf_counter() - started < 1  # a full parse takes seconds
    assert _locs(doc.urls) == [f"https://example.com/{i}?a=1&b=2" for i in range(10)]


def test_escaping_holds_across_feed_chunk_boundaries() -> None:
    locs = [f"https://example.com/{i}?a=1&b={'x' * (i % 97)}" for i in range(5000)]
    cdata = [f"<loc><![CDATA[{loc}&c=<3]]></loc>" for loc in locs[:2500]]
    plain = [f"<loc>{loc}</loc>" for loc in locs[2500:]]
    doc = parse_sitemap(_urlset(*cdata, *plain))
    assert _locs(doc.urls) == [f"{loc}&c=<3" for loc in locs[:2500]] + locs[2500:]


def test_duplicates_and_dropped_locs_do_not_count_towards_the_cap() -> None:
    body = _urlset(
        "<loc>https://example.com/a</loc>",
        "<loc>https://example.com/a</loc>",
        "<loc>ftp://example.com/b</loc>",
        "<loc>https://example.com/c</loc>",
    )
    assert _locs(parse_sitemap(body, max_entries=2).urls) == [
        "https://example.com/a",
        "https://example.com/c",
    ]


def test_slightly_broken_xml_is_read_as_far_as_it_goes() -> None:
    two = _urlset("<loc>https://example.com/a</loc>", "<loc>https://example.com/b</loc>")
    truncated = two.removesuffix(b"</url></urlset>")
    mismatched = two.replace(b"</loc></url><url>", b"</lco></urlx><url>")
    control_chars = two.replace(b"/a<", b"/a\x01\x0b<")
    stray_root_close = two.replace(b"</url><url>", b"</url></oops><url>")
    both = ["https://example.com/a", "https://example.com/b"]
    assert _locs(parse_sitemap(truncated).urls) == both
    assert _locs(parse_sitemap(mismatched).urls) == both
    assert _locs(parse_sitemap(control_chars).urls) == both
    # libxml2's recovery ends the document at a stray closing tag on the root level.
    assert _locs(parse_sitemap(stray_root_close).urls) == ["https://example.com/a"]


def test_whitespace_before_the_xml_declaration_is_tolerated() -> None:
    assert _locs(parse_sitemap(b"\n\n  " + _urlset("<loc>https://example.com/a</loc>")).urls) == [
        "https://example.com/a"
    ]


def test_utf8_bom_and_utf16_are_decoded() -> None:
    bom = b"\xef\xbb\xbf" + _urlset("<loc>https://example.com/café</loc>")
    utf16 = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        f'<urlset xmlns="{NS}"><url><loc>https://example.com/café</loc></url></urlset>'
    ).encode("utf-16")
    assert _locs(parse_sitemap(bom).urls) == ["https://example.com/café"]
    assert _locs(parse_sitemap(utf16).urls) == ["https://example.com/café"]


def test_document_is_frozen() -> None:
    doc = parse_sitemap(_urlset("<loc>https://example.com/</loc>"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        doc.urls = []  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        doc.urls[0].loc = "x"  # type: ignore[misc]


# --- garbage and empty input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \n\t ",
        b"\xef\xbb\xbf",
        b"<",
        b"<<<>>>",
        b"\x00\x01\x02\xff\xfe\xfd" * 100,
        bytes(range(256)) * 50,
        b'{"urls": ["https://example.com/"]}',
        b"<html><body><a href='https://example.com/'>https://example.com/</a></body></html>",
        b"<rss><channel><item><link>https://example.com/</link></item></channel></rss>",
        b"<urlset></urlset>",
        b"<urlset><url></url><url><loc></loc></url></urlset>",
        b"\x1f\x8bnot really gzip",
        b"\x1f\x8b",
    ],
)
def test_garbage_and_empty_bodies_give_an_empty_document(body: bytes) -> None:
    assert parse_sitemap(body) == SitemapDocument()


# --- gzip --------------------------------------------------------------------------------------


def test_gzipped_urlset_is_detected_by_magic_bytes() -> None:
    body = gzip.compress(_urlset("<loc>https://example.com/gz</loc><lastmod>2024-03-04</lastmod>"))
    assert parse_sitemap(body).urls == [
        SitemapEntry("https://example.com/gz", datetime(2024, 3, 4, tzinfo=UTC))
    ]


def test_gzipped_text_sitemap_and_multi_member_gzip() -> None:
    text = gzip.compress(b"https://example.com/1\n") + gzip.compress(b"https://example.com/2\n")
    assert _locs(parse_sitemap(text).urls) == ["https://example.com/1", "https://example.com/2"]


def test_truncated_gzip_gives_what_arrived() -> None:
    full = gzip.compress(
        _urlset(*(f"<loc>https://example.com/{i}</loc>" for i in range(2000))), mtime=0
    )
    locs = _locs(parse_sitemap(full[: len(full) // 2]).urls)
    assert 0 < len(locs) < 2000
    assert locs == [f"https://example.com/{i}" for i in range(len(locs))]


def test_corrupt_gzip_member_keeps_what_came_before_it() -> None:
    good = gzip.compress(b"https://example.com/1\n")
    corrupt = gzip.compress(b"https://example.com/2\n")[:10] + b"\xff" * 20
    assert _locs(parse_sitemap(good + corrupt).urls) == ["https://example.com/1"]


def test_gzip_bomb_past_the_default_cap_raises_fetch_error_quickly() -> None:
    bomb = _gzip_stream(MAX_SITEMAP_BYTES + (1 << 20))
    assert len(bomb) < 64 * 1024  # about 1:1000, deflate's best ratio
    started = time.perf_counter()
    with pytest.raises(FetchError, match="sitemap is larger than 50 MiB"):
        parse_sitemap(bomb)
    assert time.perf_counter() - started < 5  # inflating stops at the cap


def test_small_gzip_bomb_against_a_smaller_cap() -> None:
    bomb = _gzip_stream(8 << 20)
    assert len(bomb) < 10 * 1024
    with pytest.raises(FetchError, match="larger than 4 MiB"):
        parse_sitemap(bomb, max_bytes=4 << 20)


def test_multi_member_gzip_counts_every_member_against_the_cap() -> None:
    member = _gzip_stream(3 << 20)
    with pytest.raises(FetchError):
        parse_sitemap(member * 3, max_bytes=8 << 20)


def test_plain_body_over_the_cap_raises_fetch_error() -> None:
    with pytest.raises(FetchError, match="larger than 1000 bytes"):
        parse_sitemap(b"https://example.com/\n" * 100, max_bytes=1000)


def test_gzip_exactly_at_the_cap_is_accepted() -> None:
    body = b"https://example.com/\n"
    assert _locs(parse_sitemap(gzip.compress(body), max_bytes=len(body)).urls) == [
        "https://example.com/"
    ]


# --- plain-text sitemaps ------------------------------------------------------------------------


def test_text_sitemap_one_url_per_line() -> None:
    body = (
        b"\xef\xbb\xbfhttps://example.com/\r\n"
        b"  https://example.com/a  \n"
        b"\n"
        b"# not a url\n"
        b"ftp://example.com/f\n"
        b"https://example.com/a\n"
        b"http://example.com/b"
    )
    doc = parse_sitemap(body)
    assert _locs(doc.urls) == [
        "https://example.com/",
        "https://example.com/a",
        "http://example.com/b",
    ]
    assert all(entry.lastmod is None for entry in doc.urls)
    assert doc.sitemaps == []


def test_text_sitemap_obeys_max_entries() -> None:
    body = "\n".join(f"https://example.com/{i}" for i in range(100)).encode()
    assert len(parse_sitemap(body, max_entries=7).urls) == 7


# --- lastmod ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-05", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-06", datetime(2024, 5, 6, tzinfo=UTC)),
        ("  2024-05-06\n", datetime(2024, 5, 6, tzinfo=UTC)),
        ("2024-05-06T07:08Z", datetime(2024, 5, 6, 7, 8, tzinfo=UTC)),
        ("2024-05-06T07:08:09Z", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-05-06t07:08:09z", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-05-06T07:08:09.5Z", datetime(2024, 5, 6, 7, 8, 9, 500_000, tzinfo=UTC)),
        ("2024-05-06T07:08:09.123456789Z", datetime(2024, 5, 6, 7, 8, 9, 123_456, tzinfo=UTC)),
        ("2024-05-06T07:08:09+02:00", datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)),
        ("2024-05-06T07:08-05:30", datetime(2024, 5, 6, 12, 38, tzinfo=UTC)),
        ("2024-05-06T07:08:09+0200", datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)),
        ("2024-05-06T07:08:09+02", datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)),
        ("2024-05-06 07:08:09 +00:00", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-05-06T07:08:09", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-12-31T23:30:00-01:00", datetime(2025, 1, 1, 0, 30, tzinfo=UTC)),
    ],
)
def test_lastmod_w3c_formats(text: str, expected: datetime) -> None:
    parsed = parse_lastmod(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "yesterday",
        "2024-13-01",
        "2024-02-30",
        "2024-05-06T25:00Z",
        "2024-05-06T07:60Z",
        "2024-05-06T07:08:61Z",
        "2024-05-06T07:08+24:00",
        "2024-05-06T07:08+02:75",
        "2024-05-06T07",
        "0000-01-01",
        "0001-01-01T00:00+01:00",
        "24-05-06",
        "2024/05/06",
        "Mon, 06 May 2024 07:08:09 GMT",
        "2024-05-06T07:08:09Z trailing",
        "2" * 10_000,
    ],
)
def test_unparsable_lastmod_is_none(text: str | None) -> None:
    assert parse_lastmod(text) is None


def test_unparsable_lastmod_keeps_the_entry() -> None:
    doc = parse_sitemap(_urlset("<loc>https://example.com/</loc><lastmod>last tuesday</lastmod>"))
    assert doc.urls == [SitemapEntry("https://example.com/", None)]


def test_lastmod_keeps_the_instant_of_any_offset() -> None:
    parsed = parse_lastmod("2024-05-06T07:08:09+09:00")
    assert parsed == datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=9)))


# --- hostile XML ------------------------------------------------------------------------------

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
  <!ENTITY % remote SYSTEM "file:///etc/passwd">
  %remote;
]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>https://example.com/&xxe;</loc></url>
  <url><loc>https://example.com/after</loc><lastmod>&xxe;</lastmod></url>
</urlset>"""


def test_external_entity_is_not_expanded() -> None:
    doc = parse_sitemap(XXE)
    dumped = repr(doc)
    assert "root:" not in dumped
    assert "/bin/" not in dumped
    assert "https://example.com/after" in _locs(doc.urls)
    assert all("xxe" not in loc for loc in _locs(doc.urls))


def _billion_laughs(levels: int = 10, fan_out: int = 10) -> bytes:
    lines = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels):
        lines.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * fan_out}">')
    dtd = "\n".join(lines)
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE urlset [\n{dtd}\n]>\n'
        f'<urlset xmlns="{NS}"><url><loc>https://example.com/&lol{levels - 1};</loc>'
        f"<lastmod>&lol{levels - 1};</lastmod></url></urlset>"
    ).encode()


def _quadratic_blowup() -> bytes:
    big = "A" * 100_000
    refs = "&big;" * 20_000
    return (
        f'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY big "{big}">]>'
        f'<urlset xmlns="{NS}"><url><loc>https://example.com/{refs}</loc></url>'
        f"<url><loc>https://example.com/ok</loc></url></urlset>"
    ).encode()


@pytest.mark.parametrize(
    "body",
    [_billion_laughs(), _billion_laughs(levels=3, fan_out=3), _quadratic_blowup()],
    ids=["billion-laughs", "small-internal-entity", "quadratic-blowup"],
)
def test_entity_expansion_attacks_are_fast_and_not_expanded(body: bytes) -> None:
    # The small case would expand harmlessly under resolve_entities=True (libxml2's own
    # amplification guard only trips on the big ones), so it pins our parser option.
    started = time.perf_counter()
    doc = parse_sitemap(body)
    assert time.perf_counter() - started < 1
    assert all(len(entry.loc) < 100 for entry in doc.urls)
    assert all("lol" not in entry.loc and "AAA" not in entry.loc for entry in doc.urls)


def test_entity_expansion_attacks_stay_small_in_memory() -> None:
    """Peak RSS of a fresh interpreter parsing both attacks grows by less than 50 MiB."""
    script = textwrap.dedent(
        """
        import resource, sys
        from skr.services.crawl.sitemaps import parse_sitemap
        bodies = sys.stdin.buffer.read().split(b"\\0SPLIT\\0")
        parse_sitemap(b"<urlset><url><loc>https://example.com/</loc></url></urlset>")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for body in bodies:
            parse_sitemap(body)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(after - before)
        """
    )
    payload = _billion_laughs(levels=12) + b"\0SPLIT\0" + _quadratic_blowup()
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=payload,
        capture_output=True,
        check=True,
        timeout=60,
    )
    grown_kib = int(result.stdout.strip())
    assert grown_kib < 50 * 1024, f"peak RSS grew by {grown_kib} KiB"
