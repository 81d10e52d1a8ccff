"""The browser harness for every page test: Debian's Chromium (`browser`) and the real app
served over HTTP with Temporal unreachable (`site`), defined once in test_queue_page.py,
and German-in-New-York contexts that fail on any script error (`pages`, test_pages.py)."""

from tests.e2e.test_pages import pages
from tests.e2e.test_queue_page import browser, site

__all__ = ["browser", "pages", "site"]
