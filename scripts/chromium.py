"""Fetch Debian bookworm's headless Chromium for the console's browser tests (``make browser``).

No root and no apt: the pinned .deb files come from Debian's archive (the one place this
repository names it; Playwright's own browser download is unreachable on these machines), are
checked against their SHA-256, and are unpacked with ``dpkg-deb -x`` into a cache folder. Only the
libraries a bare bookworm machine lacks are fetched besides ``chromium`` and ``chromium-common``;
``ldd`` then checks that nothing is missing, and a short headless run that the browser starts.

Usage: ``python scripts/chromium.py [CACHE_DIR]`` (default ``.cache/chromium``). It prints the
browser's path; :func:`launch_env` gives the environment it needs (its own library folders).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

ARCHIVES = ("https://deb.debian.org/debian/", "https://deb.debian.org/debian-security/")
# bookworm (main), version 150.0.7871.100-1~deb12u1, and the libraries it needs beyond a bare
# bookworm image (found with ldd). A newer point release drops these files from the archive:
# then update the pins from `apt-cache show chromium`.
PACKAGES = (
    (
        "pool/main/c/chromium/chromium_150.0.7871.100-1~deb12u1_amd64.deb",
        "9eb054fb52bbcd7a8c6407484be2337298ff8b1e19af14af2e7b497fa190ce4f",
    ),
    (
        "pool/main/c/chromium/chromium-common_150.0.7871.100-1~deb12u1_amd64.deb",
        "31326f6b71ce20a52e7bea9792bf7135d4ff802e1cdbc250960b1b46729998d2",
    ),
    (
        "pool/main/o/openh264/libopenh264-7_2.3.1+dfsg-3+deb12u2_amd64.deb",
        "d453c4d81b7b3ff14663da75471250a4894543ae5ab5e902e225aca56aec56e8",
    ),
    (
        "pool/main/d/double-conversion/libdouble-conversion3_3.2.1-1_amd64.deb",
        "802b880ed900e4a8d54bab77b7551a7f3408b04891c3e5650fdc2368cc1fbc0a",
    ),
    (
        "pool/main/h/harfbuzz/libharfbuzz-subset0_6.0.0+dfsg-3_amd64.deb",
        "020de1eeba5fb56052a6ca71b259f8cbe3f6fce5038f4caca751c7e4867ca33f",
    ),
    (
        "pool/main/p/pulseaudio/libpulse0_16.1+dfsg1-2+b1_amd64.deb",
        "7b2c5403cb726312219aad678becc6d6adcee1d8694fdffce0b6ec15ae010831",
    ),
    (
        "pool/main/f/flac/libflac12_1.4.2+ds-2_amd64.deb",
        "4d8431c274eef13ec9ee2c0bf988c34b4342367dec053b7f69a432525be5b1fe",
    ),
    (
        "pool/main/o/opus/libopus0_1.3.1-3_amd64.deb",
        "c172e212f9039e741916aa8e12f3670d1e049dc0c16685325641288c2d83faa7",
    ),
    (
        "pool/main/libx/libxnvctrl/libxnvctrl0_525.85.05-3~deb12u1_amd64.deb",
        "6fc26e4b6069f4648692e0c225f580161e3b0c04e4bac1c616c8a418a9a9817d",
    ),
    (
        "pool/main/m/minizip/libminizip1_1.1-8+deb12u1_amd64.deb",
        "b2999b980cbb9e6dcaa2d5154c9d1f1b9d55f5a0ca8166699de7ab47afaf4a36",
    ),
    (
        "pool/main/o/openjpeg2/libopenjp2-7_2.5.0-2+deb12u3_amd64.deb",
        "a127e2f1741d66bdddb6393a718e3cbec327d53f88c89b859b1f8d73f64cf635",
    ),
    (
        "pool/main/libo/libogg/libogg0_1.3.5-3_amd64.deb",
        "f67acb0477aed0354f411172e37af338f3ac6bd4f3766134a2cf5539884b5a28",
    ),
    (
        "pool/main/libs/libsndfile/libsndfile1_1.2.0-1+deb12u1_amd64.deb",
        "02dc3f08fe8476e82e005f412e3b7289ff641180f33a9be8073f4bde61c85e8e",
    ),
    (
        "pool/main/liba/libasyncns/libasyncns0_0.8-6+b3_amd64.deb",
        "cadaff99f4178b1f580331045621b363abaaefc994e78eecba1857774a3cead2",
    ),
    (
        "pool/main/libv/libvorbis/libvorbis0a_1.3.7-1_amd64.deb",
        "01c14f9d1109650077a4c5c337c285476a6932d4d448f5a190c2b845724dbf21",
    ),
    (
        "pool/main/libv/libvorbis/libvorbisenc2_1.3.7-1_amd64.deb",
        "75dd4d6f904c7db82f5112e60d8efea9e81dfedf94e970c5da7af2b3d81643c0",
    ),
    (
        "pool/main/m/mpg123/libmpg123-0_1.31.2-1+deb12u1_amd64.deb",
        "a10ad0d59995b859797a5f20d2833672051d0b2c7dab4c71f2e79258b2e3f631",
    ),
    (
        "pool/main/l/lame/libmp3lame0_3.100-6_amd64.deb",
        "b1292c749172e7623547ecf684da57d3ec6ca22109f08b11bbb9e6be6e6beb95",
    ),
)
BINARY = "usr/lib/chromium/chromium"
LIBRARY_DIRS = (
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu/pulseaudio",
    "usr/lib/chromium",
)


def launch_env(root: Path) -> dict[str, str]:
    """The environment the unpacked browser runs in: its own libraries first."""
    paths = [str(root / d) for d in LIBRARY_DIRS]
    if os.environ.get("LD_LIBRARY_PATH"):
        paths.append(os.environ["LD_LIBRARY_PATH"])
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(paths)}


def _download(path: str, sha256: str, into: Path) -> Path:
    target = into / Path(path).name
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
        return target
    errors = []
    for archive in ARCHIVES:
        try:
            with urllib.request.urlopen(archive + path, timeout=120) as response:
                data = response.read()
        except OSError as exc:
            errors.append(f"{archive}: {exc}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise SystemExit(f"{path}: sha256 {digest}, expected {sha256}")
        target.write_bytes(data)
        return target
    raise SystemExit(f"cannot fetch {path}: " + "; ".join(errors))


def install(root: Path) -> Path:
    """Fetch, verify and unpack every pinned package under ``root``; the browser's path."""
    binary = root / BINARY
    stamp = root / ".complete"
    wanted = "\n".join(sha for _, sha in PACKAGES)
    if binary.exists() and stamp.exists() and stamp.read_text() == wanted:
        return binary
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for path, sha256 in PACKAGES:
        deb = _download(path, sha256, debs)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    env = launch_env(root)
    linked = subprocess.run(
        ["ldd", str(binary)], env=env, capture_output=True, text=True, check=False
    )
    missing = [line.strip() for line in linked.stdout.splitlines() if "not found" in line]
    if missing:
        raise SystemExit("chromium still lacks: " + ", ".join(missing))
    run = subprocess.run(
        [str(binary), "--headless", "--no-sandbox", "--dump-dom", "data:text/html,<p>ok</p>"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "<p>ok</p>" not in run.stdout:
        raise SystemExit(f"chromium does not start: {run.stderr[-2000:]}")
    stamp.write_text(wanted)
    return binary


if __name__ == "__main__":
    print(install(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/chromium").resolve()))
