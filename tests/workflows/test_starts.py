"""The API and the reconciler start the item workflow by name, without importing it."""

from __future__ import annotations

import subprocess
import sys

from temporalio import workflow

from workflows.escalation import EscalationWorkflow
from workflows.types import ESCALATION_WORKFLOW


def test_the_name_the_starters_use_is_the_workflows() -> None:
    defn = workflow._Definition.from_class(EscalationWorkflow)
    assert defn is not None
    assert defn.name == ESCALATION_WORKFLOW


def test_the_api_loads_no_workflow_or_activity_code() -> None:
    """Imports run downward: the API needs neither the workflow nor SMTP, templates or the
    webhook client."""
    probe = (
        "import sys, api.app; "
        "print(sorted(m for m in sys.modules if m.startswith(('workflows.escalation', "
        "'workflows.notifier', 'activities.'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
