"""paymux — a self-hosted aggregated payment gateway."""

__version__ = "0.1.0"
