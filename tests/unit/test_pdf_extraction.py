"""PDF extraction on PDFs written by hand here: pages as sections, title, links, failures."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader, PdfWriter

from skr.domain.errors import FetchError
from skr.services.chunking import split_into_chunks
from skr.services.extraction.pdf import extract_pdf, normalize_pdf_text
from tests.fakes.fake_embedder import FakeEmbedder

URL = "https://example.org/docs/guide.pdf"


def _pdf_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"({escaped})"


def make_pdf(
    pages: list[list[str]],
    *,
    title: str | None = None,
    links: list[list[str]] | None = None,
) -> bytes:
    """A minimal valid PDF: one page per item of ``pages``, each line of it drawn in
    24 pt Helvetica 30 pt below the last; ``links`` are URI link annotations per page."""
    objects: list[str] = []  # object n is objects[n - 1]

    def add(body: str) -> int:
        objects.append(body)
        return len(objects)

    catalog = add("")  # filled in once the page tree's number is known
    font = add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    info = add(f"<< /Title {_pdf_string(title)} /Producer (test) >>" if title else "<< >>")
    page_tree = add("")
    kids: list[int] = []
    for number, lines in enumerate(pages):
        drawn = "".join(
            f"BT /F1 24 Tf 72 {720 - 30 * i} Td {_pdf_string(line)} Tj ET\n"
            for i, line in enumerate(lines)
        )
        stream = add(f"<< /Length {len(drawn.encode('latin-1'))} >>\nstream\n{drawn}endstream")
        annotations = [
            add(
                "<< /Type /Annot /Subtype /Link /Rect [72 100 300 120] /Border [0 0 0] "
                f"/A << /Type /Action /S /URI /URI {_pdf_string(uri)} >> >>"
            )
            for uri in (links[number] if links and number < len(links) else [])
        ]
        annots = f" /Annots [{' '.join(f'{a} 0 R' for a in annotations)}]" if annotations else ""
        kids.append(
            add(
                f"<< /Type /Page /Parent {page_tree} 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {stream} 0 R{annots} >>"
            )
        )
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {page_tree} 0 R >>"
    objects[page_tree - 1] = (
        f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    )

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("ascii")
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode("ascii")
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R /Info {info} 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode("ascii")
    return bytes(out)


THREE_PAGES = [
    ["Flask Blueprints", "A blueprint groups routes."],
    ["Registering", "Call register_blueprint on the app."],
    ["Templates", "Each blueprint may have its own templates folder."],
]


def test_the_hand_made_pdf_is_valid() -> None:
    reader = PdfReader(io.BytesIO(make_pdf(THREE_PAGES, title="T")), strict=True)
    assert len(reader.pages) == 3
    assert reader.metadata is not None and reader.metadata.title == "T"


def test_each_page_is_a_section_and_the_title_comes_from_the_metadata() -> None:
    page = extract_pdf(make_pdf(THREE_PAGES, title="The Flask Guide"), URL)
    assert page.title == "The Flask Guide"
    assert page.sections == [
        ("Page 1", "Flask Blueprints A blueprint groups routes."),
        ("Page 2", "Registering Call register_blueprint on the app."),
        ("Page 3", "Templates Each blueprint may have its own templates folder."),
    ]
    assert page.text == "\n\n".join(text for _, text in page.sections)
    assert page.images == []
    assert page.links == []


def test_without_a_title_the_first_line_is_the_title() -> None:
    page = extract_pdf(make_pdf([[], ["  ", "Release notes 2.0", "Fixed things."]]), URL)
    assert page.title == "Release notes 2.0"
    assert [heading for heading, _ in page.sections] == ["Page 2"]


def test_a_blank_metadata_title_is_ignored() -> None:
    page = extract_pdf(make_pdf([["Release notes 2.0"]], title="   "), URL)
    assert page.title == "Release notes 2.0"


def test_pages_without_text_are_left_out() -> None:
    page = extract_pdf(make_pdf([["First page"], [], ["Third page"]]), URL)
    assert page.sections == [("Page 1", "First page"), ("Page 3", "Third page")]


def test_max_pages_is_respected() -> None:
    page = extract_pdf(make_pdf(THREE_PAGES, title="Guide"), URL, max_pages=2)
    assert [heading for heading, _ in page.sections] == ["Page 1", "Page 2"]
    assert "templates folder" not in page.text


def test_pages_become_the_heading_paths_of_chunks() -> None:
    page = extract_pdf(make_pdf(THREE_PAGES, title="Guide"), URL)
    chunks = split_into_chunks(page, FakeEmbedder(), 254)
    assert [chunk.heading_path for chunk in chunks] == ["Page 1", "Page 2", "Page 3"]


def test_hyphenated_line_breaks_are_joined() -> None:
    page = extract_pdf(make_pdf([["The blueprint regis-", "try keeps every route."]]), URL)
    assert page.sections == [("Page 1", "The blueprint registry keeps every route.")]


def test_link_annotations_give_absolute_http_links() -> None:
    links = [
        [
            "https://flask.palletsprojects.com/blueprints/#top",
            "mailto:someone@example.org",
            "javascript:alert(1)",
            "relative/page.html",
        ],
        ["http://example.com/a", "https://flask.palletsprojects.com/blueprints/", URL],
    ]
    page = extract_pdf(make_pdf(THREE_PAGES[:2], links=links), URL)
    assert page.links == ["https://flask.palletsprojects.com/blueprints/", "http://example.com/a"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not a PDF",
        b"<html><body>Not found</body></html>",
        b"%PDF-1.4\n" + bytes(range(256)) * 8,
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n%%EOF\n",
    ],
    ids=["empty", "text", "html", "pdf-header-and-noise", "catalog-without-pages"],
)
def test_what_is_not_a_readable_pdf_is_a_fetch_error(data: bytes) -> None:
    with pytest.raises(FetchError) as caught:
        extract_pdf(data, URL)
    assert "PDF" in caught.value.detail


def test_a_truncated_pdf_is_a_fetch_error_or_its_readable_pages() -> None:
    data = make_pdf(THREE_PAGES, title="Guide")
    for cut in range(0, len(data), 97):
        try:
            page = extract_pdf(data[:cut], URL)
        except FetchError:
            continue
        assert all(heading.startswith("Page ") for heading, _ in page.sections)


def test_a_pdf_without_text_says_it_may_be_a_scan() -> None:
    with pytest.raises(FetchError, match=r"no text layer \(scanned\?\)"):
        extract_pdf(make_pdf([[], []], title="Scanned contract"), URL)


def _encrypted(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_a_pdf_locked_by_a_password_is_a_fetch_error() -> None:
    data = _encrypted(make_pdf(THREE_PAGES), user_password="secret")
    with pytest.raises(FetchError, match="password"):
        extract_pdf(data, URL)


def test_a_pdf_encrypted_without_a_user_password_is_read() -> None:
    page = extract_pdf(_encrypted(make_pdf(THREE_PAGES), user_password=""), URL)
    assert [heading for heading, _ in page.sections] == ["Page 1", "Page 2", "Page 3"]


def test_normalize_pdf_text() -> None:
    raw = "  The  regis-\ntry\tkeeps\nroutes.\n\n \nSecond ﬁle\x00 para-\n graph.\r\n\r\nThird  "
    assert (
        normalize_pdf_text(raw) == "The registry keeps routes.\n\nSecond file paragraph.\n\nThird"
    )
    assert normalize_pdf_text("pages 10-\n12 and A-\n\nB") == "pages 10- 12 and A-\n\nB"
    assert normalize_pdf_text(" \n\n ") == ""
