"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from paymux.channel_accounts import models as channel_accounts_models
from paymux.funds import models as funds_models
from paymux.inbox import models as inbox_models
from paymux.jobs import models as jobs_models
from paymux.kit import idempotency as idempotency_models
from paymux.ledger import models as ledger_models
from paymux.merchants import models as merchants_models
from paymux.payments import models as payments_models
from paymux.payouts import models as payouts_models
from paymux.recon import models as recon_models
from paymux.refunds import models as refunds_models
from paymux.risk import models as risk_models
from paymux.risk.features import models as risk_features_models
from paymux.routing import models as routing_models
from paymux.settlement import models as settlement_models
from paymux.splits import models as splits_models
from paymux.store_codes import models as store_codes_models
from paymux.wallets import models as wallets_models
from paymux.webhooks import models as webhooks_models

__all__ = [
    "channel_accounts_models",
    "funds_models",
    "idempotency_models",
    "inbox_models",
    "jobs_models",
    "ledger_models",
    "merchants_models",
    "payments_models",
    "payouts_models",
    "recon_models",
    "refunds_models",
    "risk_features_models",
    "risk_models",
    "routing_models",
    "settlement_models",
    "splits_models",
    "store_codes_models",
    "wallets_models",
    "webhooks_models",
]
