"""Alipay OpenAPI (RSA2) channel: wire codec, adapter and sandbox."""
