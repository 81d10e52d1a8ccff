"""The custom search attributes that make escalation state readable in the Temporal UI.

The dev stack registers them on `temporal server start-dev`; the test fixtures register them
on both test servers. Query example:
`temporal workflow list --query 'EscalationTier = 2 AND EscalationState = "open"'`.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

ESCALATION_STATE = SearchAttributeKey.for_keyword("EscalationState")
ESCALATION_TIER = SearchAttributeKey.for_int("EscalationTier")
ITEM_KIND = SearchAttributeKey.for_keyword("ItemKind")
ITEM_TYPE = SearchAttributeKey.for_keyword("ItemType")
ITEM_TITLE = SearchAttributeKey.for_text("ItemTitle")  # full text: ItemTitle = "pump"
ACCOUNT_ID = SearchAttributeKey.for_keyword("AccountId")
DUE_AT = SearchAttributeKey.for_datetime("DueAt")
NEXT_RUNG_AT = SearchAttributeKey.for_datetime("NextRungAt")
CLAIMED_BY = SearchAttributeKey.for_keyword("ClaimedBy")
CLAIMED_BY_NAME = SearchAttributeKey.for_keyword("ClaimedByName")  # ClaimedByName = "Erin Engineer"

ALL = (
    ESCALATION_STATE,
    ESCALATION_TIER,
    ITEM_KIND,
    ITEM_TYPE,
    ITEM_TITLE,
    ACCOUNT_ID,
    DUE_AT,
    NEXT_RUNG_AT,
    CLAIMED_BY,
    CLAIMED_BY_NAME,
)

# The CLI's spelling of each indexed value type, for `--search-attribute Name=Type`.
_CLI_TYPE = {
    "KEYWORD": "Keyword",
    "TEXT": "Text",
    "INT": "Int",
    "DATETIME": "Datetime",
}


def cli_flags() -> list[str]:
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPE[key.indexed_value_type.name]}"]
    return flags
