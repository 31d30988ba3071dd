"""The offline IP→region database: IPv4 and IPv6, the edges of each network, nested networks
(the most specific wins), IPv4-mapped addresses, garbage, a database of one's own chosen by the
setting, and a broken database refused when loaded."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from paymux.config import Settings
from paymux.risk.features import regions
from paymux.risk.features.regions import RegionDatabaseInvalid, region_of


@pytest.mark.parametrize(
    ("ip", "region"),
    [
        ("192.0.2.0", "CN-44"),  # the first address of 192.0.2.0/24
        ("192.0.2.255", "CN-44"),  # its last
        ("192.0.1.255", None),  # just before
        ("192.0.3.0", None),  # just after
        ("198.51.100.127", "CN-31"),  # 198.51.100.0/24, below its /25
        ("198.51.100.128", "HK"),  # the nested 198.51.100.128/25 wins inside it
        ("198.51.100.255", "HK"),
        ("198.51.101.0", None),
        ("203.0.113.7", "US"),
        (" 203.0.113.7 ", "US"),
        ("::ffff:203.0.113.7", "US"),  # IPv4-mapped: the IPv4 address
        ("2001:db8::1", "CN-44"),
        ("2001:DB8:0:0::1", "CN-44"),
        ("2001:db8:1::", "HK"),  # the nested /48
        ("2001:db8:1:ffff:ffff:ffff:ffff:ffff", "HK"),
        ("2001:db8:2::9", "US"),
        ("2001:db8:3::1", "CN-44"),  # back in the /32 after the nested ones
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "CN-44"),
        ("2001:db9::", None),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("8.8.8.8", None),
        ("::", None),
        ("", None),
        ("not an ip", None),
        ("300.1.2.3", None),
        ("203.0.113.0/24", None),  # a network is not an address
        ("203.0.113", None),
    ],
)
def test_the_bundled_database(ip: str, region: str | None) -> None:
    assert region_of(ip) == region


def test_a_database_of_ones_own(tmp_path: Path) -> None:
    path = tmp_path / "regions.csv"
    path.write_text(
        "\ufeff# a comment\n\n10.0.0.0/8,CN\n10.1.0.0/16,cn-11\n10.1.2.0/24,CN-12\n"
        "10.9.9.9/32,CN-13\n10.1.2.3/8,JP\n2001:db8::/32, US \n::/0,ZZ\n",
        encoding="utf-8",
    )
    db = str(path)
    assert region_of("10.200.0.1", db) == "JP"  # a network listed again: the later line
    assert region_of("10.1.200.1", db) == "CN-11"  # upper-cased
    assert region_of("10.1.2.3", db) == "CN-12"
    assert region_of("10.1.3.0", db) == "CN-11"  # after the /24, back in the /16
    assert region_of("10.9.9.9", db) == "CN-13"
    assert region_of("10.9.9.10", db) == "JP"
    assert region_of("11.0.0.0", db) is None
    assert region_of("2001:db8::5", db) == "US"
    assert region_of("fe80::1", db) == "ZZ"
    assert region_of("203.0.113.7", db) is None  # not the bundled database
    assert regions.load(db) is regions.load(db)  # read once


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("network,region\n10.0.0.0/8,CN\n10.0.0.0/33,CN\n", 3),
        ("10.0.0.0/8,China\n", 1),
        ("# c\n10.0.0.0/8\n", 2),
        ("10.0.0.0/8,CN,extra\n", 1),
        ("network,region\nnetwork,region\n", 2),
    ],
)
def test_a_broken_database_is_refused_when_loaded(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "broken.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegionDatabaseInvalid, match=f"line {line}:"):
        region_of("10.1.1.1", str(path))


def test_the_setting_names_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMUX_ENV", "test")
    monkeypatch.setenv("PAYMUX_RISK_IP_DB", "/srv/paymux/ip_regions.csv")
    assert Settings().risk_ip_db == "/srv/paymux/ip_regions.csv"
    monkeypatch.delenv("PAYMUX_RISK_IP_DB")
    assert Settings().risk_ip_db is None


def _docs_section(title: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "risk.md").read_text("utf-8")
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _fenced(section: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", section, flags=re.M | re.S)


def test_the_docs_examples_hold() -> None:
    """docs/risk.md, "IP regions": the sample file means what the text says, and the script
    that builds a database from IP ranges builds one that answers like the ranges."""
    section = _docs_section("IP regions")
    (sample,) = _fenced(section, "text")
    db = regions.parse(sample.splitlines())
    assert db.region_of("203.0.113.200") == "CN-31" and db.region_of("203.0.113.1") == "CN-44"
    (script,) = _fenced(section, "python")
    ranges = "1.0.0.0,1.0.0.255,AU\n1.0.1.0,1.0.3.255,cn\n2001:db8::,2001:db8::ffff,US\n"
    done = subprocess.run([sys.executable, "-c", script], input=ranges, capture_output=True,
                          text=True, check=True, timeout=60)  # fmt: skip
    built = regions.parse(done.stdout.splitlines())
    assert done.stdout.startswith("network,region\n1.0.0.0/24,AU\n1.0.1.0/24,CN\n1.0.2.0/23,CN\n")
    for ip, region in (("1.0.0.255", "AU"), ("1.0.3.255", "CN"), ("1.0.4.0", None),
                       ("2001:db8::ffff", "US"), ("2001:db8::1:0", None)):  # fmt: skip
        assert built.region_of(ip) == region, ip
