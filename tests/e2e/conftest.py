"""The browser harness for every page test: Debian's Chromium (`browser`) and the real app
served over HTTP with Temporal unreachable (`site`), defined once in test_queue_page.py."""

from tests.e2e.test_queue_page import browser, site

__all__ = ["browser", "site"]
