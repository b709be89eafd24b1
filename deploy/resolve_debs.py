"""Closure of the Debian packages of one foreign architecture (arm64, armhf) that a bare
CPython 3.11 (plus a few roots) needs, from apt's own metadata.

Run:  python3 deploy/resolve_debs.py [--arch arm64|armhf] ROOT...

One ``apt-cache depends --important --recurse`` call (Depends + Pre-Depends) gives the graph;
from the roots on the command line we follow the first alternative of each or-group (and the
first provider of a virtual package) and print one package per line: ``name:ARCH`` for
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


def graph(roots: list[str], arch: str) -> dict[str, list[list[str]]]:
    """``{package: [[first alternative, second, ...], ...]}`` for the whole closure.

    A virtual package (``<python3:any>``) is replaced by a provider of ``arch``: apt lists the
    providers of every configured architecture (``python3:arm64``, ``python3:armhf``, and the
    host's own as a plain name), so the first one listed may be another architecture's."""
    out = subprocess.run(["apt-cache", "depends", "--important", "--recurse", *roots], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    g: dict[str, list[list[str]]] = {}
    cur: list[list[str]] = []
    alt_open = virtual = False
    for line in out:
        if not line.startswith(" "):
            cur = g.setdefault(line.strip(), [])
            alt_open = virtual = False
            continue
        s = line.strip()
        if s.lstrip("|").startswith(("Depends:", "PreDepends:")):
            name = s.lstrip("|").split(":", 1)[1].strip()
            if alt_open:
                cur[-1].append(name)
            else:
                cur.append([name])
            alt_open = s.startswith("|")
            virtual = name.startswith("<")
        elif cur and cur[-1] and virtual:
            # a provider of the virtual package just named: use it in its place, preferring one
            # of our architecture
            chosen = cur[-1][-1]
            if chosen.startswith("<") or (not chosen.endswith(f":{arch}") and s.endswith(f":{arch}")):
                cur[-1][-1] = s
    return g


def _architectures(names: list[str]) -> dict[str, str]:
    """``{name: Architecture}`` of apt's candidates, in one ``apt-cache show`` call."""
    show = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], capture_output=True,
                          text=True).stdout
    out: dict[str, str] = {}
    name = None
    for line in show.splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Architecture: ") and name is not None:
            out[name] = line.split(": ", 1)[1]
    return out


def main(roots: list[str], arch: str = "arm64") -> None:
    # An "all" package's dependencies are unqualified, and apt reads them as the host's
    # architecture: in a foreign sysroot they mean our architecture's package (or another "all"
    # one, which is the only kind left plain). Each round asks apt once about the names it has
    # not seen yet (apt-cache is slow to start), until the walk reaches nothing new.
    kinds: dict[str, str] = {}

    def qualify(name: str) -> str:
        return name if ":" in name or kinds.get(name) == "all" else f"{name}:{arch}"

    g: dict[str, list[list[str]]] = {}
    while True:
        plain = sorted({r for r in roots if ":" not in r and r not in kinds} |
                       {alts[0] for deps in g.values() for alts in deps
                        if ":" not in alts[0] and alts[0] not in kinds})
        if plain:
            found = _architectures(plain)
            kinds.update({n: found.get(n, "?") for n in plain})
        seen: set[str] = set()
        cut: set[str] = set()
        todo = [qualify(r) for r in roots]
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
                todo.append(qualify(alts[0]))
        missing = sorted(p for p in seen if p not in g)
        unknown = any(":" not in alts[0] and alts[0] not in kinds
                      for p in seen for alts in g.get(p, []))
        if not missing and not unknown:
            break
        if missing:
            g.update(graph(missing, arch))
            for p in missing:
                g.setdefault(p, [])  # a package without dependencies
    print("cut (not libraries):", " ".join(sorted(cut)) or "-", file=sys.stderr)
    print("\n".join(sorted(seen)))


if __name__ == "__main__":
    args = sys.argv[1:]
    arch = "arm64"
    if args[:1] == ["--arch"]:
        arch, args = args[1], args[2:]
    main(args, arch)
