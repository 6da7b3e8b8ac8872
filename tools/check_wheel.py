"""Check what a built aerec wheel (and, optionally, sdist) ships: the things a registry and a user
rely on. Exits 1 with one line per problem.

    python tools/check_wheel.py dist/aerec-*.whl [--sdist dist/aerec-*.tar.gz] [--require-manylinux]

Wheel: the compiled ``aerec/_core*.so``, ``aerec/py.typed``, the LICENSE in ``*.dist-info/licenses/``
and ``License: BSD-3-Clause`` in METADATA (no CUDA claim), the ``aerec`` console script; with ``--require-manylinux`` a
``manylinux_*`` platform tag and libgomp vendored under ``aerec.libs/`` (what ``auditwheel repair``
does), and no ``build/`` or test files. Sdist: LICENSE, README.md, pyproject.toml, py.typed, the C++
sources, and no ``build/`` tree or compiled module.
"""
from __future__ import annotations

import argparse
import re
import sys
import tarfile
import zipfile


def check_wheel(path: str, require_manylinux: bool) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        meta_name = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        meta = z.read(meta_name).decode() if meta_name else ""
        entry = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        entry_text = z.read(entry).decode() if entry else ""
    if not any(re.fullmatch(r"aerec/_core\..*\.so", n) for n in names):
        problems.append("no compiled aerec/_core*.so")
    if "aerec/py.typed" not in names:
        problems.append("no aerec/py.typed marker")
    if not any(re.fullmatch(r"aerec-[^/]+\.dist-info/licenses/LICENSE", n) for n in names):
        problems.append("no LICENSE under *.dist-info/licenses/")
    if meta and not re.search(r"^License: BSD-3-Clause$", meta, re.M):
        problems.append("METADATA does not say License: BSD-3-Clause")
    if re.search(r"\bCUDA\b", meta):
        problems.append("METADATA mentions CUDA, which aerec does not ship")
    if "aerec = aerec.cli:main" not in entry_text:
        problems.append("no 'aerec' console script")
    if any(n.startswith(("build/", "tests/")) for n in names):
        problems.append("build/ or tests/ files inside the wheel")
    if require_manylinux:
        if not re.search(r"-manylinux_\d+_\d+_x86_64(\.manylinux[^.]*)*\.whl$", path):
            problems.append(f"not a manylinux wheel: {path.rsplit('/', 1)[-1]}")
        if not any(re.fullmatch(r"aerec\.libs/libgomp-[0-9a-f]+\.so[.0-9]*", n) for n in names):
            problems.append("libgomp is not vendored under aerec.libs/ (run auditwheel repair)")
    print(f"{path}: {len(names)} files; " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return problems


def check_sdist(path: str) -> list[str]:
    problems = []
    with tarfile.open(path) as t:
        names = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
    for need in ("LICENSE", "README.md", "pyproject.toml", "CMakeLists.txt", "python/aerec/py.typed",
                 "python/aerec/__init__.py"):
        if need not in names:
            problems.append(f"sdist lacks {need}")
    if not any(n.startswith("cpp/src/") and n.endswith(".cpp") for n in names):
        problems.append("sdist lacks the C++ sources (cpp/src/*.cpp)")
    if any(n.startswith("build/") or n.endswith(".so") for n in names):
        problems.append("sdist holds build output (build/ or a compiled .so)")
    print(f"{path}: {len(names)} files; " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wheel")
    ap.add_argument("--sdist")
    ap.add_argument("--require-manylinux", action="store_true")
    args = ap.parse_args()
    problems = check_wheel(args.wheel, args.require_manylinux)
    if args.sdist:
        problems += check_sdist(args.sdist)
    for p in problems:
        print(f"  PROBLEM: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
