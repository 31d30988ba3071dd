"""Static store codes (码牌): a printable QR per store; the customer scans it, enters the amount
and pays on the hosted cashier."""
