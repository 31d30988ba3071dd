"""How the Alipay fund-flow golden bills (``golden/alipay/funds_*.csv.zip``, 账务明细) were made:
the texts below, written by hand in Alipay's format (GBK, CRLF, id and text fields ending with a
tab), zipped as Alipay ships them (fixed member times). Not a test; rerun to regenerate
(``PYTHONPATH=src python tests/channels/golden/make_alipay_funds.py``), then the expected JSON
(``PAYMUX_WRITE_GOLDEN=1``) and read the diff."""

# ruff: noqa: E501
from __future__ import annotations

import io
import zipfile
from pathlib import Path

OUT = Path(__file__).parent / "alipay"
STAMP = (2026, 12, 1, 9, 0, 0)
STEM = "20881020000000010156_20261130"
HEAD = [
    "#支付宝账务明细查询",
    "#账号：[20881020000000010156]",
    "#起始日期：[2026年11月30日 00:00:00]   终止日期：[2026年12月01日 00:00:00]",
    "#-----------------------------------------账务明细列表----------------------------------------",
    "账务流水号,业务流水号,商户订单号,商品名称,发生时间,对方账号,收入金额（+元）,支出金额（-元）,账户余额（元）,交易渠道,业务类型,备注",
]
END = (
    "#----------------------------------------账务明细列表结束-------------------------------------"
)
EXPORTED = "#导出时间：[2026年12月01日 09:00:00]"
T1, T2 = "2026113022001400000031", "2026113022001400000032"


def row(
    flow: str,
    trade: str,
    order: str,
    subject: str,
    when: str,
    other: str,
    income: str,
    expense: str,
    balance: str,
    kind: str,
    note: str = "",
) -> str:
    return (
        f"{flow}\t,{trade}\t,{order}\t,{subject}\t,{when},{other}\t,{income},{expense},"
        f"{balance},支付宝,{kind},{note}"
    )


DAY = [
    row(
        "310000000000000031",
        T1,
        "att_golden_0031",
        "Tea 茶",
        "2026-11-30 09:15:02",
        "buyer@example.com",
        "100.00",
        "0.00",
        "100.00",
        "在线支付",
    ),
    row(
        "310000000000000032",
        T1,
        "att_golden_0031",
        "Tea 茶",
        "2026-11-30 09:15:02",
        "",
        "0.00",
        "-0.60",
        "99.40",
        "收费",
        f"交易服务费[{T1}]",
    ),
    row(
        "310000000000000033",
        T2,
        "att_golden_0032",
        "Cake",
        "2026-11-30 10:02:45",
        "buyer@example.com",
        "19.99",
        "0.00",
        "119.39",
        "在线支付",
    ),
    row(
        "310000000000000034",
        T2,
        "att_golden_0032",
        "Cake",
        "2026-11-30 10:02:45",
        "",
        "0.00",
        "-0.12",
        "119.27",
        "收费",
        f"交易服务费[{T2}]",
    ),
    row(
        "310000000000000035",
        T1,
        "att_golden_0031",
        "Tea 茶",
        "2026-11-30 14:30:00",
        "buyer@example.com",
        "0.00",
        "-30.00",
        "89.27",
        "交易退款",
    ),
    row(
        "310000000000000036",
        T1,
        "att_golden_0031",
        "Tea 茶",
        "2026-11-30 14:30:00",
        "",
        "0.18",
        "0.00",
        "89.45",
        "收费",
        f"交易服务费[{T1}]",
    ),
    row(
        "310000000000000037",
        "20261130110070000000000000031",
        "po_golden_0031",
        "",
        "2026-11-30 16:00:10",
        "2088000000000031",
        "0.00",
        "-50.00",
        "39.45",
        "转账",
        "转账",
    ),
    row(
        "310000000000000038",
        "settle20261130000000000031",
        "",
        "",
        "2026-11-30 23:59:59",
        "",
        "0.00",
        "-39.45",
        "0.00",
        "提现",
        "自动提现",
    ),
]


def foot(expenses: str, expense: str, incomes: str, income: str) -> list[str]:
    return [
        END,
        f"#支出合计：{expenses}笔，共{expense}元",
        f"#收入合计：{incomes}笔，共{income}元",
        EXPORTED,
    ]


def zipped(lines: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(STEM + "_账务明细.csv", date_time=STAMP)
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, ("\r\n".join(lines) + "\r\n").encode("gbk"))
    return buf.getvalue()


FILES = {
    # two payments with their fee rows, a partial refund and the fee it returns, a payout, the
    # day's settlement: every total and the balance chain agree
    "funds_day": zipped(HEAD + DAY + foot("5", "-120.17", "3", "120.17")),
    # no movement
    "funds_empty": zipped(HEAD + foot("0", "0.00", "0", "0.00")),
    # the day, its 收入合计 one fen high and one row too many; its 支出合计 printed unsigned
    "funds_bad_summary": zipped(HEAD + DAY + foot("5", "120.17", "4", "120.18")),
    # the payout's 账户余额 a fen high: the chain breaks there (the totals agree)
    "funds_broken_chain": zipped(
        HEAD
        + DAY[:6]
        + [
            row(
                "310000000000000037",
                "20261130110070000000000000031",
                "po_golden_0031",
                "",
                "2026-11-30 16:00:10",
                "2088000000000031",
                "0.00",
                "-50.00",
                "39.46",
                "转账",
                "转账",
            ),
            row(
                "310000000000000038",
                "settle20261130000000000031",
                "",
                "",
                "2026-11-30 23:59:59",
                "",
                "0.00",
                "-39.46",
                "0.00",
                "提现",
                "自动提现",
            ),
        ]
        + foot("5", "-120.18", "3", "120.17")
    ),
    # a good row, then an amount that is not one, a time that is not one, a cut row; the totals
    # are over the good row
    "funds_bad_rows": zipped(
        HEAD
        + DAY[:1]
        + [
            row(
                "310000000000000040",
                T2,
                "att_golden_0040",
                "Cake",
                "2026-11-30 10:00:00",
                "",
                "1.0x",
                "0.00",
                "101.00",
                "在线支付",
            ),
            row(
                "310000000000000041",
                T2,
                "att_golden_0041",
                "Cake",
                "2026-11-30 25:00:00",
                "",
                "1.00",
                "0.00",
                "101.00",
                "在线支付",
            ),
            "310000000000000042\t,2026113022001400000042\t,att_golden_0042",
        ]
        + foot("0", "0.00", "1", "100.00")
    ),
    # the cut file: no footer, so no totals to check (the chain holds)
    "funds_no_footer": zipped(HEAD + DAY[:2]),
    # a 业务明细 (the trade bill) is not a 账务明细
    "funds_not_a_bill": (OUT / "day.csv.zip").read_bytes(),
    # not a zip
    "funds_not_a_zip": "#支付宝账务明细查询\r\n".encode("gbk"),
}

if __name__ == "__main__":
    for name, data in FILES.items():
        (OUT / f"{name}.csv.zip").write_bytes(data)
