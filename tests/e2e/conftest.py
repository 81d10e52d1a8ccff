"""The browser harness for every page test: Debian's Chromium (`browser`) and the real app
served over HTTP with Temporal unreachable (`site`), defined once in test_queue_page.py,
German-in-New-York contexts that fail on any script error (`pages`, test_pages.py), and the
app with a worker on the real dev server (`working_site`, test_pages.py)."""

from tests.e2e.test_pages import pages, working_site
from tests.e2e.test_queue_page import browser, site

__all__ = ["browser", "pages", "site", "working_site"]
