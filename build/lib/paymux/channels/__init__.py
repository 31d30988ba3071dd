"""Payment channels: the adapter contract, the registry and one package per channel."""
