#!/usr/bin/env python3
"""ODR / ISA-leak check for the kernel library (run by ctest and CI).

The rule (DESIGN.md "Dispatch", cpu_features.hpp): no code compiled with ISA flags runs before the
CPU has been checked for that ISA. Files src/simd/<family>_<target>.cpp are compiled with the
flags of <target>; portable code reaches them only through dispatch(). Two things would break
that behind dispatch()'s back, and both are visible in the object files:

1. A weak (COMDAT) or global symbol an ISA object defines outside its own namespace
   aerec::cpu::<target>. Inline functions and templates of a shared header (std::vector<float>,
   std::sort, an rng/vmath/activation helper, MatrixView::row) that an ISA unit uses without
   inlining are emitted there as weak definitions compiled with the ISA flags; the linker keeps
   ONE copy for the whole module, possibly that one, and portable callers then run it.
   -fvisibility-inlines-hidden does not help: hidden symbols are still merged inside one .so.
2. A static initialiser in an ISA object (.init_array / .ctors): it runs at load time, before
   any CPU check.
3. An AVX/AVX-512/AMX instruction in a portable object (the base units and *_scalar units), e.g.
   from a target attribute, inline asm or a stray flag: portable code must run on any x86-64.

Usage: check_isa_symbols.py [--self-test --cxx CXX] LIB.a|OBJ.o ...
Exit status 0 when clean, 1 on a violation (each one printed), 2 on a usage/tool error.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

# Compile targets (cpu_features.hpp, Target) -> the C++ namespace their units must use.
TARGETS = ("scalar", "avx2", "avxvnni", "avx512", "avx512vnni", "avx512bf16", "amx")
_ISA_FILE = re.compile(r"_(" + "|".join(TARGETS) + r")\.(?:cpp|cc|cxx)\.o(?:bj)?$")
_SPECIAL = r"(?:(?:vtable|VTT|typeinfo|typeinfo name|guard variable|construction vtable|" \
           r"reference temporary #\d+) for )?"
_STATIC_INIT_SECTIONS = (".init_array", ".ctors", ".preinit_array")
_WEAK = ("W", "w", "V", "v", "u")
# Not code: the hidden, identical-everywhere pointer to the C++ EH personality routine.
_ALLOWED_PREFIXES = ("DW.ref.__gxx_personality_v0",)
_MAX_SHOWN = 12


def _tool(env: str, name: str) -> str:
    path = os.environ.get(env) or shutil.which(name)
    if not path:
        sys.exit(f"check_isa_symbols: '{name}' not found (binutils); set {env}")
    return path


def _run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"check_isa_symbols: {' '.join(cmd)} failed:\n{res.stderr}")
    return res.stdout


def _members(path: str) -> list[str]:
    """Object names: the members of an archive, or the file itself."""
    if path.endswith(".a"):
        return [m for m in _run([_tool("AR", "ar"), "t", path]).split() if m]
    return [path]


def _defined_symbols(path: str) -> dict[str, list[tuple[str, str]]]:
    """{object: [(mangled name, nm type)]} of the global and weak symbols each object defines."""
    out = _run([_tool("NM", "nm"), "-A", "-P", "--defined-only", "-g", path])
    syms: dict[str, list[tuple[str, str]]] = {}
    for line in out.splitlines():
        # "lib.a[member.o]: name T value size" or "file.o: name T value size"
        head, _, rest = line.partition(": ")
        fields = rest.split()
        if len(fields) < 2:
            continue
        m = re.match(r".*\[(.*)\]$", head)
        obj = m.group(1) if m else head
        syms.setdefault(obj, []).append((fields[0], fields[1]))
    return syms


def _demangle(names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    res = subprocess.run([_tool("CXXFILT", "c++filt")], input="\n".join(names) + "\n",
                         capture_output=True, text=True, check=True)
    return dict(zip(names, res.stdout.splitlines()))


def _static_init_sections(path: str) -> dict[str, list[str]]:
    """{object: [static-initialiser sections with contents]}"""
    out = _run([_tool("READELF", "readelf"), "-S", "-W", path])
    found: dict[str, list[str]] = {}
    obj = path
    for line in out.splitlines():
        m = re.match(r"File: .*?\((.*)\)$", line.strip()) or re.match(r"File: (.*)$", line.strip())
        if m:
            obj = m.group(1)
            continue
        m = re.search(r"\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and m.group(1).startswith(_STATIC_INIT_SECTIONS) and int(m.group(2), 16) > 0:
            found.setdefault(obj, []).append(m.group(1))
    return found


# VEX/EVEX/AMX instructions in AT&T syntax: ymm/zmm/mask registers, v-prefixed mnemonics (verr/verw
# are legacy), tile instructions. SSE (xmm without a v prefix) is x86-64 baseline and fine.
_ISA_INSN = re.compile(r"%[yz]mm\d|%k[0-7]\b|^\s*(?!verr|verw)v[a-z0-9]+\s|"
                       r"^\s*(?:tile[a-z]+|tdp[a-z0-9]+|ldtilecfg|sttilecfg)\b")


def _isa_instructions(path: str) -> dict[str, list[str]]:
    """{object: [AVX/AVX-512/AMX instructions, with their function]} over an archive or object."""
    out = _run([_tool("OBJDUMP", "objdump"), "-d", "--no-show-raw-insn", path])
    found: dict[str, list[str]] = {}
    obj, func = path, "?"
    for line in out.splitlines():
        m = re.match(r"^In archive .*|^(\S+):\s+file format", line)
        if m and m.group(1):
            obj = re.sub(r"^.*\((.*)\)$", r"\1", m.group(1))
            continue
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            func = m.group(1)
            continue
        insn = re.sub(r"^\s*[0-9a-f]+:\s*", "", line)
        if insn != line and _ISA_INSN.search(insn):
            found.setdefault(obj, []).append(f"{insn.strip()}   in {func}")
    return found


def check(paths: list[str], verbose: bool = True) -> list[str]:
    """Returns the violations (empty when clean)."""
    problems: list[str] = []
    per_object: dict[str, list[tuple[str, str]]] = {}
    inits: dict[str, list[str]] = {}
    n_objects = 0
    for p in paths:
        if not os.path.exists(p):
            sys.exit(f"check_isa_symbols: {p} does not exist")
        n_objects += len(_members(p))
        for obj, syms in _defined_symbols(p).items():
            per_object.setdefault(obj, []).extend(syms)
        for obj, secs in _static_init_sections(p).items():
            inits.setdefault(obj, []).extend(secs)
    isa_objects = {o: _ISA_FILE.search(os.path.basename(o)).group(1)
                   for o in per_object if _ISA_FILE.search(os.path.basename(o))}
    isa_objects.update({o: _ISA_FILE.search(os.path.basename(o)).group(1)
                        for o in inits if _ISA_FILE.search(os.path.basename(o))})
    if n_objects == 0:
        problems.append("no object files given")
        return problems
    definers: dict[str, list[str]] = {}
    for obj, syms in per_object.items():
        for name, _ in syms:
            definers.setdefault(name, []).append(obj)
    names = sorted({n for o in isa_objects for n, _ in per_object.get(o, [])})
    dem = _demangle(names)
    for obj, target in sorted(isa_objects.items()):
        own = re.compile("^" + _SPECIAL + re.escape(f"aerec::cpu::{target}::"))
        bad: dict[str, str] = {}  # demangled -> description (C1/C2 ctor aliases collapse)
        for name, kind in per_object.get(obj, []):
            pretty = dem.get(name, name)
            if own.match(pretty) or name.startswith(_ALLOWED_PREFIXES):
                continue
            others = sorted({os.path.basename(o) for o in definers.get(name, []) if o != obj})
            desc = f"{'weak' if kind in _WEAK else 'global'} {pretty}"
            if others:
                desc += f"   <- also defined in {', '.join(others)}"
            bad.setdefault(pretty, desc)
        if bad:
            shown = list(bad.values())
            lines = "\n    ".join(shown[:_MAX_SHOWN])
            if len(shown) > _MAX_SHOWN:
                lines += f"\n    ... and {len(shown) - _MAX_SHOWN} more"
            problems.append(
                f"{os.path.basename(obj)} (compiled for {target}) defines {len(shown)} symbol(s) outside "
                f"aerec::cpu::{target}:\n    {lines}\n"
                "  The linker keeps one copy of a weak symbol for the whole module, so portable callers "
                f"may run the {target} one before any CPU check; a global one they call directly. Fix: "
                "keep the code in the unit's namespace (anonymous inside it), and use no shared inline/"
                "template code there (include declaration-only headers).")
    for p in paths:
        for obj, insns in sorted(_isa_instructions(p).items()):
            target = _ISA_FILE.search(os.path.basename(obj))
            if target is None or target.group(1) == "scalar":
                names = sorted({i.split("   in ")[-1] for i in insns})
                problems.append(f"{os.path.basename(obj)} (portable) contains {len(insns)} AVX/AVX-512/AMX "
                                f"instruction(s), e.g. {insns[0]}; functions: "
                                f"{', '.join(_demangle(names).get(n, n) for n in names[:5])}. Portable "
                                "code must run on any x86-64: move it to a src/simd/ unit behind dispatch()")
    for obj, secs in sorted(inits.items()):
        if obj in isa_objects:
            problems.append(f"{os.path.basename(obj)} (compiled for {isa_objects[obj]}) has a static "
                            f"initialiser ({', '.join(secs)}): it runs at load time, before any CPU "
                            "check; make its tables constant-initialised (constexpr data)")
    if verbose:
        per_target: dict[str, int] = {}
        for t in isa_objects.values():
            per_target[t] = per_target.get(t, 0) + 1
        summary = ", ".join(f"{t}: {per_target[t]}" for t in TARGETS if t in per_target) or "none"
        print(f"check_isa_symbols: {n_objects} objects, ISA objects ({summary}); "
              f"{len(problems)} problem(s)")
    return problems


# A leak the check must catch: an inline header function and std::vector<float> used by an AVX2
# unit at -O0 (weak, ISA-compiled copies), and a dynamically initialised table in it.
_SELF_TEST = {
    "helper.hpp": "#pragma once\n#include <vector>\n"
                  "inline float shared_helper(float x) { return x * 2.f + 1.f; }\n",
    "base.cpp": '#include "helper.hpp"\nfloat base_user(float x) { std::vector<float> v(4, x);'
                " return shared_helper(v[1]); }\n",
    "simd/leaky_avx2.cpp": '#include "../helper.hpp"\nnamespace aerec::cpu::avx2 {\n'
                           "float kernel(float x) { std::vector<float> v(8, x); return shared_helper(v[3]); }\n"
                           "struct T { float (*f)(float); };\nT make() { return T{&kernel}; }\n"
                           "extern const T kTable;\nconst T kTable = make();\n}\n",
    "fast.cpp": '__attribute__((target("avx2"))) void doubled(float* a) '
                "{ for (int i = 0; i < 64; ++i) a[i] *= 2.f; }\n",
    "simd/clean_avx512.cpp": "namespace aerec::cpu::avx512 {\nnamespace {\n"
                             "float k(float x) { return x + 1.f; }\n}\n"
                             "struct T { float (*f)(float); };\nextern const T kTable;\n"
                             "const T kTable = {&k};\n}\n",
}


def self_test(cxx: str) -> int:
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "simd"))
        for name, text in _SELF_TEST.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        objs = []
        for src, flags in (("base.cpp", []), ("fast.cpp", ["-O2"]), ("simd/leaky_avx2.cpp", ["-mavx2", "-mfma"]),
                           ("simd/clean_avx512.cpp", ["-mavx512f"])):
            obj = os.path.join(d, src.replace(".cpp", ".cpp.o"))
            subprocess.run([cxx, "-std=c++17", "-O0", "-fPIC", *flags, "-c", os.path.join(d, src),
                            "-o", obj], check=True)
            objs.append(obj)
        problems = check(objs, verbose=False)
        text = "\n".join(problems)
        expect = {
            "weak std::vector<float> internals": "std::allocator<float>" in text,
            "weak shared_helper copy": "shared_helper(float)" in text and "also defined in base.cpp.o" in text,
            "static initialiser": "static initialiser" in text and "leaky_avx2" in text,
            "AVX code in a portable unit": "fast.cpp.o (portable)" in text and "doubled" in text,
            "clean unit passes": "clean_avx512" not in text and "base.cpp.o (portable)" not in text,
        }
        for what, ok in expect.items():
            print(f"self-test: {what}: {'caught' if ok else 'MISSED'}")
        if not all(expect.values()):
            print(text)
            return 1
        print("self-test: ok")
        return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="static libraries or object files of aerec_kernels")
    ap.add_argument("--self-test", action="store_true", help="prove the check catches a planted leak")
    ap.add_argument("--cxx", default=os.environ.get("CXX", "c++"), help="compiler for --self-test")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test(args.cxx)
    paths = [p for arg in args.paths for p in arg.split(";") if p]  # CMake lists arrive joined
    if not paths:
        ap.error("give the kernel library (.a) or its object files")
    problems = check(paths)
    for p in problems:
        print("ISA LEAK: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
