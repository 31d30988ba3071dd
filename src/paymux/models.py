"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from paymux.channels import models as channels_models
from paymux.jobs import models as jobs_models
from paymux.kit import idempotency as idempotency_models
from paymux.ledger import models as ledger_models
from paymux.merchants import models as merchants_models
from paymux.payments import models as payments_models
from paymux.webhooks import models as webhooks_models

__all__ = [
    "channels_models",
    "idempotency_models",
    "jobs_models",
    "ledger_models",
    "merchants_models",
    "payments_models",
    "webhooks_models",
]
