"""WeChat Pay API v3: wire codec (``protocol``), adapter (``adapter``) and sandbox (``sandbox``)."""
