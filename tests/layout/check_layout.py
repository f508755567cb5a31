#!/usr/bin/env python3
"""The module rules of docs/architecture.md, checked on the tree (a ctest):
a module includes only its own headers, the public headers of the modules
it depends on, and the system headers of the libraries it links; and no two
test files share a name (a failure report then names one file only)."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

# module -> modules whose public headers it may include
DEPENDS = {
    "common": [],
    "chat": ["common"],
    "cluster": ["chat", "common"],
    "deflate": ["common"],
    "serve": ["chat", "cluster", "common", "deflate"],
    "capture": ["common"],
    "loadgen": ["common", "deflate"],
    "": ["serve", "capture", "loadgen"],    # src/main.c
}
# what each module shows the others; everything else in its folder is its own
PUBLIC = {
    "common": None,                          # all of it: the shared toolbox
    "deflate": {"ws_deflate.h"},
    "chat": {"chat.h", "store.h", "escape.h"},
    "cluster": {"cluster.h"},
    "serve": {"serve.h"},
    "capture": {"capture.h"},
    "loadgen": {"bench.h"},
}
# system headers a module must not see (libraries it does not link)
FORBIDDEN = {
    "common": ["uv.h", "pcap", "jansson.h", "sqlite3.h", "zlib.h", "http_parser.h", "hiredis", "openssl"],
    "chat": ["uv.h", "pcap", "zlib.h", "http_parser.h", "hiredis"],
    "deflate": ["uv.h", "pcap", "jansson.h", "sqlite3.h", "http_parser.h", "hiredis"],
    "capture": ["uv.h", "sqlite3.h", "hiredis"],
    "loadgen": ["pcap", "sqlite3.h", "jansson.h", "hiredis"],
    "cluster": ["pcap", "sqlite3.h", "zlib.h", "http_parser.h"],
    "serve": ["pcap", "hiredis"],
}

# files allowed what the rest of their module is not
ALLOWED = {
    "common/ws_accept.c": ["openssl"],      # the accept value's SHA-1: the codec needs only libc
}

def headers_of(module):
    return {p.name for p in (SRC / module).glob("*.h")} if module else set()

def is_test_file(p):
    return (p.name.startswith("test_") and p.suffix in (".py", ".c")) or p.name.endswith(".test.mjs")


def test_name_problems():
    seen = {}
    problems = []
    for f in sorted((ROOT / "tests").rglob("*")):
        if "node_modules" in f.parts or not f.is_file() or not is_test_file(f):
            continue
        if f.name in seen:
            problems.append(f"{f.relative_to(ROOT)}: same name as {seen[f.name].relative_to(ROOT)}")
        seen.setdefault(f.name, f)
    return problems


def include_problems():
    owner = {}
    problems = []
    for m in PUBLIC:
        for h in headers_of(m):
            if h in owner:      # includes name a header by its file name alone
                problems.append(f"{m}/{h}: same name as {owner[h]}/{h}")
            owner[h] = m
    for f in sorted(SRC.rglob("*.[ch]")):
        module = f.parent.name if f.parent != SRC else ""
        text = f.read_text(errors="replace")
        for inc in re.findall(r'#include\s+"([^"]+)"', text):
            home = owner.get(inc)
            if home is None and inc != "assets.h":
                problems.append(f"{f.relative_to(SRC)}: includes unknown \"{inc}\"")
            elif home in (None, module):
                continue
            elif home not in DEPENDS[module]:
                problems.append(f"{f.relative_to(SRC)}: module '{module or 'main'}' does not depend on '{home}' (\"{inc}\")")
            elif PUBLIC[home] is not None and inc not in PUBLIC[home]:
                problems.append(f"{f.relative_to(SRC)}: \"{inc}\" is internal to '{home}'")
        for inc in re.findall(r'#include\s+<([^>]+)>', text):
            allowed = ALLOWED.get(str(f.relative_to(SRC)), [])
            for bad in FORBIDDEN.get(module, []):
                if inc.startswith(bad) and bad not in allowed:
                    problems.append(f"{f.relative_to(SRC)}: module '{module}' must not use <{inc}>")
    return problems


def main():
    problems = include_problems() + test_name_problems()
    for p in problems:
        print(p)
    print(f"{len(problems)} layout problems in {len(list(SRC.rglob('*.[ch]')))} files")
    return 1 if problems else 0

if __name__ == "__main__":
    sys.exit(main())
