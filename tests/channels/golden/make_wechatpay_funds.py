"""How the WeChat Pay fund-flow golden bills (``golden/wechatpay/funds_*.csv``) were made: the
texts below, written by hand in WeChat's format (CRLF, every cell backticked). Not a test; rerun
to regenerate (``PYTHONPATH=src python tests/channels/golden/make_wechatpay_funds.py``), then the
expected JSON (``PAYMUX_WRITE_GOLDEN=1``) and read the diff."""

# ruff: noqa: E501
from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).parent / "wechatpay"
HEADER = "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,资金变更提交申请人,备注,业务凭证号"
SUMMARY = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额"


def row(*cells: str) -> str:
    return "`" + ",`".join(cells)


P1 = row(
    "2026-11-30 09:15:02",
    "4200002026113000000031",
    "20261130100000000000000031",
    "交易",
    "交易",
    "收入",
    "99.40",
    "99.40",
    "system",
    "结算总金额 99.40 元;含手续费 0.60 元",
    "att_golden_0031",
)
P2 = row(
    "2026-11-30 10:02:45",
    "4200002026113000000032",
    "20261130100000000000000032",
    "交易",
    "交易",
    "收入",
    "19.87",
    "119.27",
    "system",
    "结算总金额 19.87 元;含手续费 0.12 元",
    "att_golden_0032",
)
R1 = row(
    "2026-11-30 14:30:00",
    "50300002026113000000031",
    "20261130100000000000000033",
    "退款",
    "退款",
    "支出",
    "29.82",
    "89.45",
    "1900000109API",
    "退款总金额29.82元;含手续费0.18元",
    "re_golden_0031",
)
T1 = row(
    "2026-11-30 16:00:10",
    "1330000020261130000000000000000031",
    "20261130100000000000000034",
    "商家转账",
    "商家转账",
    "支出",
    "50.00",
    "39.45",
    "1900000109API",
    "商家转账",
    "po_golden_0031",
)
S1 = row(
    "2026-11-30 23:59:59",
    "settle20261130000000000031",
    "20261130100000000000000035",
    "提现",
    "提现",
    "支出",
    "39.45",
    "0.00",
    "system",
    "自动提现",
    "",
)

FILES = {
    # two payments, a partial refund, a payout and the day's settlement: all agree
    "funds_day": [HEADER, P1, P2, R1, T1, S1, SUMMARY, row("5", "2", "119.27", "3", "119.27")],
    # no movement: the header and a zero summary
    "funds_empty": [HEADER, SUMMARY, row("0", "0", "0.00", "0", "0.00")],
    # the day, its summary one line and one fen too many on the income side
    "funds_bad_summary": [
        HEADER,
        P1,
        P2,
        R1,
        T1,
        S1,
        SUMMARY,
        row("6", "3", "119.28", "3", "119.27"),
    ],
    # the payout's 账户结余 is a fen high: the chain breaks there (the summary agrees)
    "funds_broken_chain": [
        HEADER,
        P1,
        P2,
        row(
            "2026-11-30 16:00:10",
            "1330000020261130000000000000000031",
            "20261130100000000000000034",
            "商家转账",
            "商家转账",
            "支出",
            "50.00",
            "69.28",
            "1900000109API",
            "商家转账",
            "po_golden_0031",
        ),
        row(
            "2026-11-30 23:59:59",
            "settle20261130000000000031",
            "20261130100000000000000035",
            "提现",
            "提现",
            "支出",
            "69.28",
            "0.00",
            "system",
            "自动提现",
            "",
        ),
        SUMMARY,
        row("4", "2", "119.27", "2", "119.28"),
    ],
    # a good line, then: 收支类型 neither side, an amount that is not one, a line cut short
    "funds_bad_rows": [
        HEADER,
        P1,
        row(
            "2026-11-30 10:00:00",
            "4200002026113000000040",
            "20261130100000000000000040",
            "交易",
            "交易",
            "其他",
            "1.00",
            "100.40",
            "system",
            "",
            "att_golden_0040",
        ),
        row(
            "2026-11-30 10:01:00",
            "4200002026113000000041",
            "20261130100000000000000041",
            "交易",
            "交易",
            "收入",
            "1.0x",
            "100.40",
            "system",
            "",
            "att_golden_0041",
        ),
        row("2026-11-30 10:02:00", "4200002026113000000042", "20261130100000000000000042", "交易"),
        SUMMARY,
        row("1", "1", "99.40", "0", "0.00"),
    ],
    # the older names: ASCII brackets in the header, counts as ``N.0``, 企业付款, a fee line of
    # its own, an adjustment of another kind
    "funds_older_names": [
        HEADER.replace("（", "(").replace("）", ")"),
        row(
            "2026-11-30 09:00:00",
            "4200002026113000000051",
            "20261130100000000000000051",
            "交易",
            "交易",
            "收入",
            "10.00",
            "10.00",
            "system",
            "",
            "att_golden_0051",
        ),
        row(
            "2026-11-30 09:00:00",
            "4200002026113000000051",
            "20261130100000000000000052",
            "交易",
            "扣除交易手续费",
            "支出",
            "0.06",
            "9.94",
            "system",
            "",
            "att_golden_0051",
        ),
        row(
            "2026-11-30 11:00:00",
            "10100002026113000000051",
            "20261130100000000000000053",
            "企业付款",
            "企业付款",
            "支出",
            "5.00",
            "4.94",
            "1900000109API",
            "佣金",
            "po_golden_0051",
        ),
        row(
            "2026-11-30 12:00:00",
            "20261130000000000000054",
            "20261130100000000000000054",
            "调账",
            "调账",
            "收入",
            "0.06",
            "5.00",
            "system",
            "手续费返还",
            "",
        ),
        SUMMARY,
        row("4.0", "2.0", "10.06", "2.0", "5.06"),
    ],
    # a trade bill is not a fund-flow bill
    "funds_not_a_bill": [
        "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注",
    ],
}

if __name__ == "__main__":
    for name, lines in FILES.items():
        (OUT / f"{name}.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
