"""Bill tweaks belong to a sandbox, which the tests of a session share: each test starts with
none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import Stack


@pytest.fixture(autouse=True)
async def _no_bill_tweaks(stack: Stack) -> AsyncIterator[None]:
    for sandbox in stack.sandboxes.values():
        sandbox.core.bill_tweaks.clear()
    yield
    for sandbox in stack.sandboxes.values():
        sandbox.core.bill_tweaks.clear()
