"""The page policy of a provider SDK's step in the cashier (Stripe.js for cards and wallets,
any other SDK alike): :func:`sdk_policy` widens the CSP by exactly the origins the step's own
URLs name, nothing else."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from paymux.web import SecurityPolicy

_HOST = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])$")


def _origin(url: Any) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, or None — nothing else reaches the CSP."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    host = f"[{host}]" if ":" in host else host
    if not _HOST.match(host):
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def sdk_policy(action: Mapping[str, Any], base: SecurityPolicy) -> SecurityPolicy | None:
    """The page policy for a provider SDK's step (``sdk_params`` with ``js_url``): the
    script's origin may run scripts and frames (Stripe.js's Elements), the API's origin
    (``api_base``, else the script's) takes the SDK's calls — those origins only, read from
    the step itself, so the cashier needs no knowledge of any channel."""
    if action.get("type") != "sdk_params":
        return None
    params = action.get("params") or {}
    script = _origin(params.get("js_url"))
    if script is None:
        return None
    api = _origin(params.get("api_base")) or script
    return dataclasses.replace(
        base, extra_script_origins=(script,), extra_frame_origins=(script,),
        extra_connect_origins=(api,),
    )  # fmt: skip
