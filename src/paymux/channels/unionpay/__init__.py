"""UnionPay 全渠道 (ACP 5.1.0, certificate signatures) channel: codec, adapter and sandbox."""
