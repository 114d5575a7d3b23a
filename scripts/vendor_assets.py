"""Vendor the console's browser assets (htmx, uPlot) into the gateway package.

The console must work with no internet at run time, so the built files are committed under
``jobline_gateway/console/static/vendor/`` with their licences. This script reproduces them:
``npm pack`` fetches each pinned package, its SHA-512 is checked against the pin, and the
listed files are copied out. ``--check`` only compares the committed files with the tarballs.

Usage: ``python scripts/vendor_assets.py [--check]`` (needs npm).
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).parent.parent / "services/gateway/src/jobline_gateway/console/static/vendor"
# name@version, npm's dist.integrity, {file in the tarball: file under vendor/}
PINS = (
    (
        "htmx.org@2.0.11",
        "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        {"package/dist/htmx.min.js": "htmx.min.js", "package/LICENSE": "htmx.LICENSE"},
    ),
    (
        "uplot@1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        {
            "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
            "package/dist/uPlot.min.css": "uPlot.min.css",
            "package/LICENSE": "uPlot.LICENSE",
        },
    ),
)


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def main(check: bool) -> int:
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec, integrity, files in PINS:
            out = subprocess.run(
                ["npm", "pack", "--silent", spec],
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
            )
            tarball = Path(tmp) / out.stdout.strip().splitlines()[-1]
            if _integrity(tarball.read_bytes()) != integrity:
                raise SystemExit(f"{spec}: integrity mismatch")
            with tarfile.open(tarball) as archive:
                for member, name in files.items():
                    extracted = archive.extractfile(member)
                    assert extracted is not None, member
                    data = extracted.read()
                    target = VENDOR / name
                    if check:
                        if not target.exists() or target.read_bytes() != data:
                            stale.append(name)
                    else:
                        VENDOR.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data)
    if stale:
        print("differ from the pinned packages:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
