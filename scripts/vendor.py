#!/usr/bin/env python3
"""Vendor front-end packages from the npm registry into the Python package.

paymux serves every browser asset itself (no CDN at run time: offline installs and much of
paymux's audience cannot reach one). This script is the one way such assets enter the repo:

* ``scripts/vendor.json`` lists what is wanted: an npm package, a version range, the files of
  its tarball to keep (the licence files are always kept) and where they go.
* ``python scripts/vendor.py lock`` resolves each range with ``npm view`` and records name,
  version, tarball URL and sha512 integrity in ``scripts/vendor.lock.json``.
* ``python scripts/vendor.py sync`` (the default) fetches each locked tarball with ``npm pack``,
  checks its sha512 against the lock (refusing anything else), and copies the kept files and
  licences to ``<dest>/<name>-<version>/``, removing other versions of that package there.
* ``python scripts/vendor.py check`` verifies the committed files against the tarballs without
  writing anything (exit 1 on a difference).

Only npm and the Python standard library are needed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "scripts" / "vendor.json"
LOCK = ROOT / "scripts" / "vendor.lock.json"
DEFAULT_DEST = "src/paymux/static/vendor"
LICENCE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "NOTICE", "COPYING")


def _npm(*args: str, cwd: Path | None = None) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed (Debian: apt-get install npm)")
    done = subprocess.run(  # noqa: S603 — npm itself, arguments from our own spec
        [npm, *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return done.stdout


def _dir_name(name: str, version: str) -> str:
    return f"{name.replace('@', '').replace('/', '-')}-{version}"


def lock() -> None:
    spec = json.loads(SPEC.read_text())
    entries = []
    for pkg in spec["packages"]:
        info = json.loads(_npm("view", f"{pkg['name']}@{pkg['version']}", "--json",
                               "name", "version", "dist"))  # fmt: skip
        if isinstance(info, list):  # a range matching several versions: npm lists each
            info = info[-1]
        entries.append({
            "name": info["name"],
            "version": info["version"],
            "tarball": info["dist"]["tarball"],
            "integrity": info["dist"]["integrity"],
            "files": pkg["files"],
            "dest": pkg.get("dest", DEFAULT_DEST),
        })  # fmt: skip
        print(f"locked {info['name']}@{info['version']}")
    LOCK.write_text(json.dumps({"packages": entries}, indent=2) + "\n")


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _tarball(entry: dict[str, Any], workdir: Path) -> bytes:
    out = json.loads(_npm("pack", f"{entry['name']}@{entry['version']}", "--json",
                          "--pack-destination", str(workdir), cwd=workdir))  # fmt: skip
    data: bytes = (workdir / out[0]["filename"]).read_bytes()
    got = _integrity(data)
    if got != entry["integrity"]:
        raise SystemExit(
            f"{entry['name']}@{entry['version']}: integrity {got} != locked {entry['integrity']}"
        )
    return data


def _members(entry: dict[str, Any], data: bytes) -> dict[str, bytes]:
    """The kept files of the tarball, by path relative to the package root."""
    wanted = set(entry["files"])
    kept: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            rel = member.name.split("/", 1)[1]  # npm tarballs nest everything in package/
            if rel in wanted or rel in LICENCE_NAMES:
                extracted = tar.extractfile(member)
                assert extracted is not None
                kept[rel] = extracted.read()
    missing = wanted - kept.keys()
    if missing:
        raise SystemExit(f"{entry['name']}@{entry['version']} has no {sorted(missing)}")
    if not any(rel in LICENCE_NAMES for rel in kept):
        raise SystemExit(f"{entry['name']}@{entry['version']} ships no licence file")
    return kept


def sync(*, check_only: bool = False) -> int:
    entries = json.loads(LOCK.read_text())["packages"]
    differences = 0
    with tempfile.TemporaryDirectory() as tmp:
        for entry in entries:
            kept = _members(entry, _tarball(entry, Path(tmp)))
            base = ROOT / entry["dest"]
            target = base / _dir_name(entry["name"], entry["version"])
            if check_only:
                for rel, content in kept.items():
                    path = target / rel
                    if not path.is_file() or path.read_bytes() != content:
                        print(f"differs: {path.relative_to(ROOT)}")
                        differences += 1
                continue
            for old in base.glob(_dir_name(entry["name"], "*")):
                if old.is_dir() and old != target:
                    shutil.rmtree(old)
            if target.exists():
                shutil.rmtree(target)
            for rel, content in kept.items():
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            print(f"vendored {entry['name']}@{entry['version']} → {target.relative_to(ROOT)}")
    return 1 if differences else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="sync", choices=["lock", "sync", "check"])
    args = parser.parse_args(argv)
    if args.command == "lock":
        lock()
        return sync()
    return sync(check_only=args.command == "check")


if __name__ == "__main__":
    sys.exit(main())
