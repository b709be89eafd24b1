"""Which Ed25519 library the box uses: PyNaCl (libsodium) vs cryptography (OpenSSL), measured.

Run:  python bench/ed25519_libs.py [--python PY] [--wheels DIR] [--json OUT]
PY must have both ``pynacl`` and ``cryptography`` installed (a scratch venv:
``python3 -m venv /tmp/ed && /tmp/ed/bin/pip install pynacl cryptography numpy``). With
``--wheels DIR`` the script also downloads (``pip download --only-binary :all:``) each library's
wheel for aarch64 and armv7l (manylinux, cp311) into DIR and records the sizes, or that none
exists. Writes bench/results/ed25519_libs.json by default and prints a table.

Per library, in 7 fresh processes that first import numpy and sqlite3 (as the service has): the
import time, the first verify (loads the backend), the median of 200 verifies of a 4 KB message
(about a manifest's size) and the resident-set growth (VmRSS) from before the import to after
the verifies. Medians are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CODE = r'''
import sys, time, json
import numpy, sqlite3  # noqa: F401 -- the service's process already holds these
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
r0 = rss(); t0 = time.perf_counter()
msg = b"x" * 4000
if sys.argv[1] == "pynacl":
    from nacl.signing import SigningKey, VerifyKey
    t1 = time.perf_counter()
    sk = SigningKey(b"\x01" * 32); sig = sk.sign(msg).signature; vk = VerifyKey(bytes(sk.verify_key))
    verify = lambda: vk.verify(msg, sig)
else:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    t1 = time.perf_counter()
    sk = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32); sig = sk.sign(msg); pk = sk.public_key()
    verify = lambda: pk.verify(sig, msg)
verify(); t2 = time.perf_counter()
ts = []
for _ in range(200):
    a = time.perf_counter(); verify(); ts.append(time.perf_counter() - a)
ts.sort()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "first_verify_ms": (t2 - t1) * 1e3,
                  "verify_us": ts[100] * 1e6, "rss_growth_kb": rss() - r0}))
'''

PLATFORMS = {"aarch64": ["manylinux2014_aarch64"],
             "armv7l": ["manylinux_2_17_armv7l", "manylinux_2_31_armv7l", "manylinux_2_35_armv7l"]}


def wheel_sizes(pkg: str, dest: Path) -> dict:
    out = {}
    for arch, plats in PLATFORMS.items():
        d = dest / arch
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
               "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
               "-d", str(d), pkg] + [a for p in plats for a in ("--platform", p)]
        subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(d.glob(f"{pkg.replace('-', '_')}-*.whl")) if d.is_dir() else []
        found = found or (sorted(d.glob(f"{pkg}-*.whl")) if d.is_dir() else [])
        found = [w for w in found if w.name.lower().startswith(pkg.lower())]
        out[arch] = ({"wheel": found[-1].name, "bytes": found[-1].stat().st_size} if found
                     else {"wheel": None, "note": "no wheel on PyPI"})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--wheels", type=Path)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "ed25519_libs.json"))
    args = ap.parse_args(argv)
    res = {}
    for lib in ("pynacl", "cryptography"):
        runs = [json.loads(subprocess.run([args.python, "-c", CODE, lib], capture_output=True,
                                          text=True, check=True).stdout) for _ in range(7)]
        res[lib] = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
        if args.wheels:
            res[lib]["wheels"] = {p: wheel_sizes(p, args.wheels) for p in
                                  ([lib, "cffi"] if lib == "pynacl" else [lib, "cffi"])}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    print(f"{'library':14s} {'import ms':>10s} {'1st verify ms':>14s} {'verify us':>10s} {'RSS +KB':>8s}")
    for lib, r in res.items():
        print(f"{lib:14s} {r['import_ms']:10.1f} {r['first_verify_ms']:14.1f} {r['verify_us']:10.1f} "
              f"{r['rss_growth_kb']:8d}")
        for pkg, arches in r.get("wheels", {}).items():
            print("   " + pkg + ": " + ", ".join(
                f"{a} {w['bytes'] / 1e6:.2f} MB" if w.get("bytes") else f"{a} none"
                for a, w in arches.items()))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
