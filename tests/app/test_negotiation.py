"""Accept negotiation for /explain: q-values, wildcards and specificity decide."""

import pytest

from app.api.negotiation import accepts_png


@pytest.mark.parametrize(
    ("accept", "png"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("image/png", True),
        ("IMAGE/PNG", True),
        ("image/*", True),
        ("image/png;q=0", False),
        ("image/png;q=0.5, application/json", False),
        ("application/json;q=0.5, image/png", True),
        ("image/png, application/json", True),
        ("application/json, image/png", False),
        ("image/webp,image/*,*/*;q=0.8", True),  # a browser's <img> request
        ("text/html,application/xhtml+xml,*/*;q=0.8", False),  # a browser's page request
        ("image/*;q=0.9, */*", False),
        ("application/json;q=0.9, image/*", True),
        ("image/png;q=abc", False),
        ("text/plain", False),
    ],
)
def test_accept_header_decides_png_or_json(accept, png):
    assert accepts_png(accept) is png
