"""Closure of the arm64 Debian packages a bare CPython 3.11 needs, from apt's own metadata.

One ``apt-cache depends --important --recurse`` call (Depends + Pre-Depends) gives the graph;
from the roots on the command line we follow the first alternative of each or-group (and the
first provider of a virtual package) and print one package per line: ``name:arm64`` for
architecture-specific packages, the plain name for ``Architecture: all`` ones.

Packages that only make sense on a booted system with dpkg (the package tools, perl, debconf,
tzdata's configuration) are cut off: the sysroot is a *library* root for ``qemu-aarch64 -L``,
never a system anybody runs maintainer scripts in. What was cut goes to stderr so a changed
dependency shows in the log. ``deploy/arm_check.sh`` then proves the result by importing every
stdlib C extension the device code relies on, under emulation.
"""

from __future__ import annotations

import subprocess
import sys

# Tools and configuration packages, not libraries a python3.11 process loads.
CUT = {"dpkg", "tar", "install-info", "perl", "perl-base", "perl-modules-5.36", "libperl5.36",
       "debconf", "tzdata", "mailcap", "mime-support", "readline-common", "libtirpc-common"}


def graph(roots: list[str]) -> dict[str, list[list[str]]]:
    """``{package: [[first alternative, second, ...], ...]}`` for the whole closure."""
    out = subprocess.run(["apt-cache", "depends", "--important", "--recurse", *roots], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    g: dict[str, list[list[str]]] = {}
    cur: list[list[str]] = []
    alt_open = False
    for line in out:
        if not line.startswith(" "):
            cur = g.setdefault(line.strip(), [])
            alt_open = False
            continue
        s = line.strip()
        if s.lstrip("|").startswith(("Depends:", "PreDepends:")):
            name = s.lstrip("|").split(":", 1)[1].strip()
            if alt_open:
                cur[-1].append(name)
            else:
                cur.append([name])
            alt_open = s.startswith("|")
        elif cur and cur[-1] and cur[-1][-1].startswith("<"):
            # a provider of the virtual package just named: use it in its place
            cur[-1][-1] = s
    return g


def main(roots: list[str]) -> None:
    roots = [r if ":" in r else f"{r}:arm64" for r in roots]
    g = graph(roots)
    seen: set[str] = set()
    cut: set[str] = set()
    todo = list(roots)
    while todo:
        pkg = todo.pop()
        base = pkg.split(":")[0]
        if base in CUT:
            cut.add(base)
            continue
        if pkg in seen:
            continue
        seen.add(pkg)
        for alts in g.get(pkg, []):
            todo.append(alts[0])
    print("cut (not libraries):", " ".join(sorted(cut)) or "-", file=sys.stderr)
    print("\n".join(sorted(seen)))


if __name__ == "__main__":
    main(sys.argv[1:])
