#!/usr/bin/env python3
"""The module rules on the built libraries (a ctest): every call from one
module into another goes along a dependency of check_layout.DEPENDS, so
a prototype written by hand cannot hide a call the include rules would
refuse, and the modules call each other without a cycle.

usage: check_symbols.py NM MODULE=LIBRARY.a ..."""
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_layout import DEPENDS  # noqa: E402


def symbols(nm, lib):
    out = subprocess.run([nm, "-A", lib], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-2] == "U":
            undefined.add(parts[-1])
        elif len(parts) >= 3 and parts[-2] in "TDBRCVW":
            defined.add(parts[-1])
    return defined, undefined - defined


def main(nm, pairs):
    libs = dict(p.split("=", 1) for p in pairs)
    owner, needs = {}, {}
    for module, lib in libs.items():
        defined, needs[module] = symbols(nm, lib)
        for s in defined:
            owner.setdefault(s, module)
    calls = defaultdict(set)
    for module, syms in needs.items():
        for s in syms:
            if owner.get(s, module) != module:
                calls[(module, owner[s])].add(s)
    problems = [f"{m} calls {d} ({', '.join(sorted(syms)[:3])}), which it does not depend on"
                for (m, d), syms in sorted(calls.items()) if d not in DEPENDS.get(m, [])]
    for p in problems:
        print(p)
    print(f"{len(problems)} calls against the module rules among {len(libs)} libraries")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
