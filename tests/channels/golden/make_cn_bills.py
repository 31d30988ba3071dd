"""How the Alipay and UnionPay golden bills were made: the texts below, written by hand, zipped
as the channels ship them (fixed member times). Not a test; rerun to regenerate
(``PYTHONPATH=src python tests/channels/golden/make_cn_bills.py``), then regenerate the expected
JSON (``PAYMUX_WRITE_GOLDEN=1``) and read the diff."""

# ruff: noqa: E501
from __future__ import annotations

import io
import zipfile
from pathlib import Path

from paymux.channels.unionpay import protocol as p

OUT = str(Path(__file__).parent) + "/"
STAMP = (2026, 12, 1, 9, 0, 0)


def zipped(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()


# ------------------------------------------------------------------ Alipay
PID = "20881020000000010156"
HEAD = (
    "#支付宝业务明细查询\r\n#账号：[20881020000000010156]\r\n"
    "#起始日期：[2026年11月30日 00:00:00]   终止日期：[2026年12月01日 00:00:00]\r\n"
    "#-----------------------------------------业务明细列表----------------------------------------\r\n"
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
    "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注\r\n"
)
END = "#-----------------------------------------业务明细列表结束------------------------------------\r\n"
EXPORTED = "#导出时间：[2026年12月01日 09:00:00]\r\n"
SUM_HEAD = (
    "#支付宝业务汇总查询\r\n#账号：[20881020000000010156]\r\n"
    "#起始日期：[2026年11月30日 00:00:00]   终止日期：[2026年12月01日 00:00:00]\r\n"
    "#-----------------------------------------业务汇总列表----------------------------------------\r\n"
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,"
    "商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）\r\n"
)
SUM_END = "#----------------------------------------业务汇总列表结束-------------------------------------\r\n"

T1 = "2026113022001400000001"
T2 = "2026113022001400000002"
T3 = "2026112922001400000003"
A1, A2, A3 = (
    "att_01kb0000000000000000000001",
    "att_01kb0000000000000000000002",
    "att_01kb0000000000000000000003",
)
R1, R2 = "re_01kb0000000000000000000001", "re_01kb0000000000000000000002"


def row(tno, oid, kind, subject, created, done, amount, fee, req=""):
    return (
        f"{tno}\t,{oid}\t,{kind}\t,{subject},{created},{done},\t,\t,\t,\t,buy***@example.com\t,"
        f"{amount},{amount},0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,{req}\t,{fee},0.00,\r\n"
    )


PAY1 = row(
    T1, A1, "交易", "茶 Tea", "2026-11-30 09:59:40", "2026-11-30 10:00:05", "100.00", "-0.60"
)
PAY2 = row(
    T2, A2, "交易", '"咖啡, Coffee"', "2026-11-30 11:30:00", "2026-11-30 11:30:10", "25.00", "-0.15"
)
BACK1 = row(
    T1, A1, "退款", "茶 Tea", "2026-11-30 09:59:40", "2026-11-30 14:00:00", "-40.00", "0.24", R1
)
BACK2 = row(
    T2,
    A2,
    "退款",
    '"咖啡, Coffee"',
    "2026-11-30 11:30:00",
    "2026-11-30 15:00:00",
    "-25.00",
    "0.15",
    R2,
)
LATE = row(
    T3, A3, "交易", "水 Water", "2026-11-29 23:59:50", "2026-11-29 23:59:58", "9.99", "-0.06"
)


def alipay(name, rows, trades, trade_sum, refunds, refund_sum, summary):
    detail = (
        HEAD
        + "".join(rows)
        + END
        + f"#交易合计：{trades}笔，商家实收共{trade_sum}元，商家优惠共0.00元\r\n"
        + f"#退款合计：{refunds}笔，商家实收退款共{refund_sum}元，商家优惠退款共0.00元\r\n"
        + EXPORTED
    )
    total = SUM_HEAD + summary + "\r\n" + SUM_END + EXPORTED
    data = zipped(
        [
            (f"{PID}_20261130_业务明细.csv", detail.encode("gbk")),
            (f"{PID}_20261130_业务明细(汇总).csv", total.encode("gbk")),
        ]
    )
    open(OUT + "alipay/" + name, "wb").write(data)


# payments, a partial refund (T1), a full refund (T2), a row of the day before, T2 listed twice
alipay(
    "day.csv.zip",
    [PAY1, PAY2, BACK1, BACK2, LATE, PAY2],
    4,
    "159.99",
    2,
    "-65.00",
    "合计,,4,2,94.99,94.99,0.00,0.00,0.00,-0.57,0.00,94.42",
)
alipay(
    "empty.csv.zip", [], 0, "0.00", 0, "0.00", "合计,,0,0,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00"
)
# the footer's 商家实收 and the 汇总 订单金额 one fen high, the 退款 count one too many
alipay(
    "bad_summary.csv.zip",
    [PAY1],
    1,
    "100.01",
    1,
    "0.00",
    "合计,,1,0,100.01,100.01,0.00,0.00,0.00,-0.60,0.00,99.41",
)
BAD_AMOUNT = row(
    T2, A2, "交易", "咖啡", "2026-11-30 11:30:00", "2026-11-30 11:30:10", "25.0x", "-0.15"
)
SHORT = "2026113022001400000009\t,att_01kb0000000000000000000009\t,交易\t,截断的行\r\n"
alipay(
    "bad_row.csv.zip",
    [PAY1, BAD_AMOUNT, SHORT],
    1,
    "100.00",
    0,
    "0.00",
    "合计,,1,0,100.00,100.00,0.00,0.00,0.00,-0.60,0.00,99.40",
)
# a 账务明细 (bill_type=signcustomer) export: another bill, not the trade bill
ledger = (
    "#支付宝账务明细查询\r\n#账号：[20881020000000010156]\r\n"
    "#-----------------------------------------账务明细列表----------------------------------------\r\n"
    "账务流水号,业务流水号,商户订单号,商品名称,发生时间,对方账号,收入金额（+元）,支出金额（-元）,账户余额（元）,"
    "交易渠道,业务类型,备注\r\n"
)
open(OUT + "alipay/not_a_bill.csv.zip", "wb").write(
    zipped([(f"{PID}_20261130_账务明细.csv", ledger.encode("gbk"))])
)
open(OUT + "alipay/not_a_zip.csv.zip", "wb").write(
    "交易时间,公众账号ID,商户号\r\n`2026-11-30 10:00:05,`wx1,`1900000001\r\n".encode()
)

# ------------------------------------------------------------------ UnionPay
MER = "777290058110048"
Q1, Q2, Q3 = "612611301000050000001", "612611301130100000002", "612611292359580000003"
QR1, QR2 = "612611301400000000011", "612611301500000000012"
O1, O2, O3 = (
    "att01kb0000000000000000000001",
    "att01kb0000000000000000000002",
    "att01kb0000000000000000000003",
)
OR1, OR2 = "re01kb0000000000000000000001", "re01kb0000000000000000000002"


def zm(code, order, amount, query, time, fee, orig="", txn=("01", "01", "000201"), settle=""):
    return (
        p.zm_line(
            {
                "tradeCode": code,
                "acqInsCode": "00000049998",
                "sendInsCode": "00000049998",
                "traceNo": query[-6:],
                "txnTime": time,
                "txnAmt": f"{amount:012d}",
                "queryId": query,
                "orderId": order,
                "txnType": txn[0],
                "txnSubType": txn[1],
                "bizType": txn[2],
                "origQryId": orig,
                "merId": MER,
                "merFee": fee,
                "settleAmt": settle,
            }
        )
        + b"\r\n"
    )


REFUND = ("04", "00", "000201")
ZM_NAME = f"INN26113088ZM_{MER}"
ZME_NAME = f"INN26113088ZME_{MER}"
PAY1 = zm("S22", O1, 10000, Q1, "1130100005", "D000000000060")
PAY2 = zm("S22", O2, 2500, Q2, "1130113010", "D000000000015")
BACK1 = zm("S30", OR1, 4000, QR1, "1130140000", "C000000000024", Q1, REFUND)
BACK2 = zm("S30", OR2, 2500, QR2, "1130150000", "C000000000015", Q2, REFUND)
LATE = zm("S22", O3, 999, Q3, "1129235958", "D000000000006")


def unionpay(name, records, zme=None):
    members = [(ZM_NAME, b"".join(records))]
    if zme is not None:
        members.append((ZME_NAME, zme))
    open(OUT + "unionpay/" + name, "wb").write(zipped(members))


# payments, a partial refund (O1), a full refund (O2), a record of the day before (cleared
# after 23:00: this settlement day's), O2 listed twice
unionpay("day.zip", [PAY1, PAY2, BACK1, BACK2, LATE, PAY2])
unionpay("empty.zip", [])
bad_amount = zm("S22", O2, 2500, Q2, "1130113010", "D000000000015").replace(
    b"000000002500", b"0000000025x0"
)
bad_fee = zm("S22", O3, 999, Q3, "1130120000", "X000000000006")
unionpay("bad_row.zip", [PAY1, bad_amount, "S22 截断的记录\r\n".encode("gbk"), bad_fee])
unionpay("zme.zip", [PAY1], zme=b"E74 00000049998 612611301000050000001 000000000100\r\n")
# settleAmt (结算金额) on two records, C (credited) and D (debited); the third has none: its
# amount net of merFee clears (the funds reading's settlement: -(9940 - 3976 + 2485))
unionpay(
    "settle_amt.zip",
    [
        zm("S22", O1, 10000, Q1, "1130100005", "D000000000060", settle="C000000009940"),
        zm(
            "S30", OR1, 4000, QR1, "1130140000", "C000000000024", Q1, REFUND, settle="D000000003976"
        ),
        PAY2,
    ],
)
open(OUT + "unionpay/not_a_bill.zip", "wb").write(
    zipped([(f"{PID}_20261130_业务明细.csv", HEAD.encode("gbk"))])
)
open(OUT + "unionpay/not_a_zip.zip", "wb").write(b"<html><body>502 Bad Gateway</body></html>\r\n")
