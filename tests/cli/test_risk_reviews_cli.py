"""``paymux risk reviews | review … | decision | backtest | changes`` and ``risk ruleset
shadow`` through typer's CliRunner against a running gateway (tests/test_cli_money.py's), on
SQLite and PostgreSQL: a payment the merchant's rules send to review is found in the queue,
assigned, approved; its decision shown; a stricter draft replayed and run in shadow; the audit
trail lists it all; and each refusal is an error line with its code."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.test_cli_money import Shop, cli, no, refused
from tests.test_cli_money import gateway as gateway  # noqa: F401  (the fixture)
from tests.test_cli_money import shop as shop  # noqa: F401

WATCH = {"name": "watch", "event": "payment.create", "expression": "amount == 4242",
         "action": "review"}  # fmt: skip


def _post(shop: Shop, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = shop.http.post(path, json=body)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def test_the_review_queue_from_the_terminal(shop: Shop) -> None:  # noqa: F811
    draft = _post(shop, "/v1/risk/rule_sets", {"rules": [WATCH]})
    _post(shop, f"/v1/risk/rule_sets/{draft['id']}/publish")
    payment = _post(shop, "/v1/payments", {"amount": 4242, "method": "wechat_native",
                                           "out_trade_no": no(), "subject": "card"})  # fmt: skip
    review, decision = payment["risk"]["review"], payment["risk"]["decision"]

    queue = cli("risk", "reviews", "--merchant", shop.merchant)["data"]
    assert [x["id"] for x in queue] == [review]
    assert cli("risk", "review", "show", review)["subject_id"] == payment["id"]
    assert cli("risk", "review", "assign", review, "--to", "ana", "--actor", "rita")[
        "assignee"] == "ana"  # fmt: skip
    refused("risk", "review", "approve", review, "--reason", " ", code="parameter_missing")
    approved = cli("risk", "review", "approve", review, "--reason", "known buyer",
                   "--actor", "rita")  # fmt: skip
    assert (approved["state"], approved["closed_by"]) == ("approved", "operator:rita")
    refused("risk", "review", "decline", review, "--reason", "late", code="review_closed")
    refused("risk", "review", "decline", review, "--reason", "x", "--attribute", "ip",
            code="parameter_missing")  # fmt: skip
    refused("risk", "reviews", "--state", "pending", code="parameter_invalid")
    refused("risk", "review", "show", "rrv_missing", code="resource_missing")

    shown = cli("risk", "decision", decision)
    assert shown["outcome"] == "review" and shown["rules"][-1]["name"] == "watch"
    refused("risk", "decision", "rdc_missing", code="resource_missing")

    stricter = cli("risk", "ruleset", "create", str(_rules_file([{**WATCH, "action": "block"}])),
                   "--merchant", shop.merchant)  # fmt: skip
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    report = cli("risk", "backtest", stricter["id"], "--merchant", shop.merchant,
                 "--from", since)  # fmt: skip
    assert report["changes"] == {"review→block": 1}, report
    refused("risk", "backtest", stricter["id"], "--merchant", shop.merchant, "--from", "soon",
            code="parameter_invalid")  # fmt: skip
    shadowed = cli("risk", "ruleset", "shadow", stricter["id"], "--merchant", shop.merchant)
    assert shadowed["shadow_since"]
    off = cli("risk", "ruleset", "shadow", stricter["id"], "--merchant", shop.merchant, "--off")
    assert off["shadow_since"] is None

    actions = [c["action"] for c in cli("risk", "changes", "--merchant", shop.merchant)["data"]]
    assert actions[:5] == ["rule_set.shadow", "rule_set.shadow", "rule_set.created",
                           "review.approved", "review.assigned"]  # fmt: skip


def _rules_file(rules: list[dict[str, Any]]) -> Any:
    import json
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "rules.json"
    path.write_text(json.dumps({"rules": rules}), encoding="utf-8")
    return path
