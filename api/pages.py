"""The browser pages: static HTML that calls the API from the browser (no server-side
rendering, no build step). Each route only returns its file; the pages read the item id or
the link from their own address (a link from its fragment, never sent to the server)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).with_name("static")
router = APIRouter(include_in_schema=False)


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """Every browser asks for it; a 404 each page load is noise in every log."""
    return FileResponse(STATIC / "favicon.png", media_type="image/png")


@router.get("/")
async def queue_page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/admin/people")
async def people_page() -> FileResponse:
    return FileResponse(STATIC / "people.html")


@router.get("/admin/policies")
async def policies_page() -> FileResponse:
    return FileResponse(STATIC / "policies.html")


@router.get("/admin/calendars")
async def calendars_page() -> FileResponse:
    return FileResponse(STATIC / "calendars.html")


@router.get("/admin/webhooks")
async def webhooks_page() -> FileResponse:
    return FileResponse(STATIC / "webhooks.html")


@router.get("/items")
async def items_page() -> FileResponse:
    return FileResponse(STATIC / "items.html")


@router.get("/items/{item_id}")
async def item_page(item_id: str) -> FileResponse:
    # Any id: the page itself says "not found" for one the API does not know.
    return FileResponse(STATIC / "item.html")


@router.get("/signin")
async def sign_in_page() -> FileResponse:
    return FileResponse(STATIC / "signin.html")


@router.get("/claim")
async def claim_page() -> FileResponse:
    return FileResponse(STATIC / "claim.html")


@router.get("/address")
async def address_page() -> FileResponse:
    return FileResponse(STATIC / "address.html")
