"""Payment and attempt state machines as explicit transition tables."""

from __future__ import annotations

from enum import StrEnum

from paymux.kit.errors import Conflict


class PaymentStatus(StrEnum):
    pending = "pending"
    """Waiting for the customer (or for the channel to tell us the outcome)."""
    succeeded = "succeeded"
    """Paid. Final."""
    failed = "failed"
    """The channel refused or the customer's payment failed. Final."""
    closed = "closed"
    """Closed on request, at the channel too; can no longer be paid. Final."""
    expired = "expired"
    """Not paid before ``expires_at``; closed at the channel too. Final."""


class AttemptStatus(StrEnum):
    created = "created"
    """Recorded, channel not yet called (or the process died while calling it)."""
    pending = "pending"
    """The channel accepted the order; waiting for the customer."""
    unknown = "unknown"
    """The create call timed out or failed ambiguously; the janitor queries until known."""
    succeeded = "succeeded"
    failed = "failed"
    closed = "closed"


PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.pending: frozenset(
        {PaymentStatus.succeeded, PaymentStatus.failed, PaymentStatus.closed, PaymentStatus.expired}
    ),
    PaymentStatus.succeeded: frozenset(),
    PaymentStatus.failed: frozenset(),
    PaymentStatus.closed: frozenset(),
    PaymentStatus.expired: frozenset(),
}

ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.created: frozenset(
        {
            AttemptStatus.pending,
            AttemptStatus.unknown,
            AttemptStatus.succeeded,
            AttemptStatus.failed,
            AttemptStatus.closed,
        }
    ),
    AttemptStatus.unknown: frozenset(
        {AttemptStatus.pending, AttemptStatus.succeeded, AttemptStatus.failed, AttemptStatus.closed}
    ),
    AttemptStatus.pending: frozenset(
        {AttemptStatus.succeeded, AttemptStatus.failed, AttemptStatus.closed}
    ),
    AttemptStatus.succeeded: frozenset(),
    AttemptStatus.failed: frozenset(),
    AttemptStatus.closed: frozenset(),
}

FINAL_PAYMENT = frozenset(s for s, nxt in PAYMENT_TRANSITIONS.items() if not nxt)
FINAL_ATTEMPT = frozenset(s for s, nxt in ATTEMPT_TRANSITIONS.items() if not nxt)


class IllegalTransition(Conflict):
    def __init__(self, what: str, current: str, target: str) -> None:
        super().__init__(
            "illegal_transition", f"A {what} cannot go from {current!r} to {target!r}."
        )
        self.current = current
        self.target = target


def can_transition_payment(current: PaymentStatus, target: PaymentStatus) -> bool:
    return target in PAYMENT_TRANSITIONS[current]


def can_transition_attempt(current: AttemptStatus, target: AttemptStatus) -> bool:
    return target in ATTEMPT_TRANSITIONS[current]


def check_payment(current: PaymentStatus, target: PaymentStatus) -> None:
    if not can_transition_payment(current, target):
        raise IllegalTransition("payment", current, target)


def check_attempt(current: AttemptStatus, target: AttemptStatus) -> None:
    if not can_transition_attempt(current, target):
        raise IllegalTransition("attempt", current, target)


# Payment-code (付款码) attempts being reversed at the channel carry one of these in
# ``Attempt.error_code``: from the moment the gateway decides to reverse, nothing the channel
# reports about the order can make the payment succeed (a reversed paid order refunds the
# customer), so late success notifications are acknowledged and ignored.
ATTEMPT_REVERSING = "reversing"
ATTEMPT_REVERSED = "reversed"
REVERSE_MARKS = frozenset({ATTEMPT_REVERSING, ATTEMPT_REVERSED})

# An attempt the gateway asked the channel to close carries this in ``Attempt.error_code``
# from before the close request: a channel that then reports the order closed (a notification
# racing the close's answer, a query after a crash) is reporting *our* close, not the
# customer's or the channel's (payments/transitions.py, ``_unpaid_outcome``).
ATTEMPT_CLOSING = "closing"
