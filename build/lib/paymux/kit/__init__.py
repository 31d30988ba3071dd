"""Shared plumbing used by every domain."""
