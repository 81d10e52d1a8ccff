"""Issue 22's small things that a test can hold: a favicon instead of a 404 on every page
load, and API docs that load nothing from outside (Redoc's bundle named Redocly's CDN)."""

from __future__ import annotations

import re

from tests.api.conftest import Api


async def test_every_page_gets_a_favicon(api_without_temporal: Api) -> None:
    icon = await api_without_temporal.client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/png"
    assert icon.content.startswith(b"\x89PNG")


async def test_the_api_docs_load_nothing_from_outside(api_without_temporal: Api) -> None:
    client = api_without_temporal.client
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        assert not re.search(r'(?:src|href)="(?:https?:)?//', html), page
        for asset in re.findall(r'(?:src|href)="(/[^"]+)"', html):
            served = await client.get(asset)
            assert served.status_code == 200, asset
            assert "cdn.redoc.ly" not in served.text, asset
            assert not re.search(r"https://(?:cdn|fonts)\.", served.text), asset
