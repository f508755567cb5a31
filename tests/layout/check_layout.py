#!/usr/bin/env python3
"""The module rules of docs/architecture.md, checked on the tree (a ctest):
a module includes only its own headers, the public headers of the modules
it depends on, and the system headers of the libraries it links; its
CMakeLists.txt links exactly those modules; the README's layout table and
docs/architecture.md name every module and every file; each file's first
comment names that file; and no two test files share a name (a failure report then names one file only)."""
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


def module_dirs():
    return sorted(p.name for p in SRC.iterdir() if p.is_dir())


def linked_modules(cmake_text):
    links = " ".join(re.findall(r"target_link_libraries\(([^)]*)\)", cmake_text))
    return set(re.findall(r"\btagarela_(\w+)", links)) - {"assets"}


def cmake_problems():
    problems = [f"src/{m}/: a module the layout rules do not know" for m in module_dirs() if m not in DEPENDS]
    for m in module_dirs():
        if m not in DEPENDS:
            continue
        linked = linked_modules((SRC / m / "CMakeLists.txt").read_text()) - {m}
        if linked != set(DEPENDS[m]):
            problems.append(f"src/{m}/CMakeLists.txt links {sorted(linked)}, the rules say {sorted(DEPENDS[m])}")
    main_links = linked_modules((ROOT / "CMakeLists.txt").read_text())
    if main_links != set(DEPENDS[""]):
        problems.append(f"CMakeLists.txt: tagarela links {sorted(main_links)}, the rules say {sorted(DEPENDS[''])}")
    return problems


def table_rows(text, pattern):
    """The rows of markdown tables whose first cell matches pattern, by its group."""
    return {m.group(1): line for line in text.splitlines() if (m := re.match(pattern, line))}


def named(stem, text):
    return re.search(r"`%s(\.[ch])?`" % re.escape(stem), text) is not None


def doc_problems():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    readme_rows = table_rows(layout, r"\| `src/(\w+)/` \|")
    arch = (ROOT / "docs/architecture.md").read_text()
    modules_section = arch[arch.index("## Modules"):arch.index("\n## ", arch.index("## Modules") + 1)]
    arch_rows = table_rows(modules_section, r"\| (\w+) \|")
    problems = []
    for m in module_dirs():
        if m not in readme_rows:
            problems.append(f"README.md: the layout table has no row for src/{m}/")
        if m not in arch_rows:
            problems.append(f"docs/architecture.md: the module table has no row for {m}")
        for stem in sorted({f.stem for f in (SRC / m).glob("*.c")}):
            if m in readme_rows and not named(stem, readme_rows[m]):
                problems.append(f"README.md: the src/{m}/ row does not name `{stem}`")
            if not named(stem, modules_section):
                problems.append(f"docs/architecture.md: no `{stem}` of {m} under 'Modules'")
    return problems


def head_comment_problems():
    """A file's first comment names the file: after a move it must follow."""
    problems = []
    for f in sorted(SRC.rglob("*.[ch]")):
        m = re.match(r"/\* (\S+\.[ch]) --", f.read_text(errors="replace"))
        if m and m.group(1) != f.name:
            problems.append(f"{f.relative_to(SRC)}: its first comment calls it {m.group(1)}")
    return problems


def main():
    problems = (include_problems() + test_name_problems() + cmake_problems() + doc_problems()
                + head_comment_problems())
    for p in problems:
        print(p)
    print(f"{len(problems)} layout problems in {len(list(SRC.rglob('*.[ch]')))} files")
    return 1 if problems else 0

if __name__ == "__main__":
    sys.exit(main())
