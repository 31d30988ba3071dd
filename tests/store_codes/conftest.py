from __future__ import annotations

import pytest

from paymux.store_codes import endpoints


@pytest.fixture(autouse=True)
def fresh_submit_limits(monkeypatch: pytest.MonkeyPatch) -> endpoints.SubmitLimits:
    """Each test starts with full buckets (the suite's stack is shared by the session)."""
    limits = endpoints.SubmitLimits()
    monkeypatch.setattr(endpoints, "limits", limits)
    return limits
