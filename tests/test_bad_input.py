"""Table-driven bad-input suite over every public entry point (issue 7).

The table is ``tests/badinput_cases.py`` (one row per case: entry point, bad argument, expected
exception and a message fragment). The cases run in a few subprocesses (``badinput_runner.py``),
so a segfault, abort or hang is recorded as the failure of that one case and the others still run:
when a subprocess dies, the case it had started is marked ``crash`` (with the signal) and a fresh
subprocess continues with the rest.

Run it alone for the counts: ``python tests/test_bad_input.py`` (or ``pytest -s`` shows them).
"""
from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import subprocess
import sys

import pytest

import aerec

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import badinput_cases as bc  # noqa: E402

RUNNER = os.path.join(HERE, "badinput_runner.py")
N_WORKERS = 2
CHUNK_TIMEOUT = 240
EXITS: list = []  # (returncode, stderr tail) of every runner that answered all its cases


def _env():
    env = dict(os.environ)
    # the aerec this pytest imports (a source checkout on PYTHONPATH or the installed wheel), so the
    # runners test the same build, compiled module included
    py = os.path.dirname(os.path.dirname(os.path.abspath(aerec.__file__)))
    env["PYTHONPATH"] = py + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _run_chunk(ids):
    """Run ``ids`` in subprocesses until each has a result (a dead process costs one case)."""
    results = {}
    todo = list(ids)
    while todo:
        started = None
        try:
            proc = subprocess.run([sys.executable, RUNNER, *todo], capture_output=True, text=True,
                                  timeout=CHUNK_TIMEOUT, env=_env(), cwd=HERE)
            out, rc, timed_out = proc.stdout, proc.returncode, False
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            rc, timed_out, proc = None, True, None
        for line in out.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "start" in rec:
                started = rec["start"]
            elif rec.get("id") in todo:
                results[rec["id"]] = rec
        missing = [c for c in todo if c not in results]
        if not missing:
            # every case answered, but the interpreter must also exit cleanly: heap corruption
            # shows up as a glibc abort at exit (a bad indptr once did exactly that)
            EXITS.append((rc, (proc.stderr if proc is not None else "")[-1500:]))
            break
        if started is None or started in results:
            # died before the first case (import / fixture failure): every case fails the same way
            err = (proc.stderr if proc is not None else "")[-2000:]
            for c in missing:
                results[c] = {"id": c, "outcome": "crash", "exc": None, "mro": [],
                              "msg": f"runner failed before the case (rc={rc}): {err}"}
            break
        err = (proc.stderr if proc is not None else "")[-1500:]
        results[started] = {"id": started, "outcome": "hang" if timed_out else "crash", "exc": None, "mro": [],
                            "msg": f"subprocess {'timed out' if timed_out else f'died with rc={rc}'}: {err}"}
        todo = [c for c in missing if c != started]
    return results


def run_all(cases=None):
    cases = bc.CASES if cases is None else cases
    ids = [c.id for c in cases]
    chunks = [ids[i::N_WORKERS] for i in range(N_WORKERS)]
    results = {}
    with concurrent.futures.ThreadPoolExecutor(N_WORKERS) as pool:
        for part in pool.map(_run_chunk, chunks):
            results.update(part)
    return results


def verdict(case, rec):
    """(passed, why) for one case's result."""
    if rec["outcome"] in ("crash", "hang"):
        return False, f"{rec['outcome']}: {rec['msg']}"
    if case.exc is None:
        if rec["outcome"] == "ok":
            return True, ""
        return False, f"expected success, got {rec['exc']}: {rec['msg']}\n{rec.get('tb', '')}"
    if rec["outcome"] == "ok":
        return False, f"expected {case.exc}, but the call returned (silently accepted)"
    if case.exc not in rec["mro"]:
        return False, f"expected {case.exc}, got {rec['exc']}: {rec['msg']}\n{rec.get('tb', '')}"
    if case.frag.lower() not in rec["msg"].lower():
        return False, f"{rec['exc']} message lacks {case.frag!r}: {rec['msg']}"
    return True, ""


def summary(results) -> str:
    by_exc = collections.Counter(c.exc or "returns normally" for c in bc.CASES)
    outcomes = collections.Counter()
    for c in bc.CASES:
        rec = results.get(c.id, {"outcome": "missing"})
        ok, _ = verdict(c, rec) if c.id in results else (False, "")
        outcomes["pass" if ok else rec["outcome"] if rec["outcome"] in ("crash", "hang") else "fail"] += 1
    entries = len({c.entry for c in bc.CASES})
    lines = [f"bad-input suite: {len(bc.CASES)} cases over {entries} entry points"]
    lines.append("expected: " + ", ".join(f"{k} {v}" for k, v in sorted(by_exc.items(), key=lambda kv: -kv[1])))
    lines.append("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    return "\n".join(lines)


@pytest.fixture(scope="module")
def results():
    res = run_all()
    print("\n" + summary(res))
    return res


def test_runners_exit_cleanly(results):
    assert EXITS, "no runner finished"
    for rc, err in EXITS:
        assert rc == 0, f"a runner answered every case but then died with rc={rc}: {err}"


def test_table_is_well_formed():
    assert len(bc.CASES) >= 300
    for c in bc.CASES:
        compile(c.code, c.id, "exec")
        assert c.exc is None or c.frag is not None


@pytest.mark.parametrize("case", bc.CASES, ids=[c.id for c in bc.CASES])
def test_bad_input(case, results):
    if case.entry.startswith("backends.cpp") and not aerec.backends.available()["cpp"]:
        pytest.skip("the compiled backend is not built here")
    ok, why = verdict(case, results[case.id])
    assert ok, why


def test_runner_records_a_crash_as_one_failed_case(tmp_path, monkeypatch):
    """A case that kills its interpreter is counted as a crash and the next case still runs."""
    # the runner imports the table itself: give it the extra rows through a wrapper module
    wrapper = tmp_path / "badinput_cases.py"
    wrapper.write_text(f"import sys\nsys.path.insert(0, {HERE!r})\n"
                       "import importlib.util as u\n"
                       f"s = u.spec_from_file_location('_real_cases', {os.path.join(HERE, 'badinput_cases.py')!r})\n"
                       "m = u.module_from_spec(s); s.loader.exec_module(m)\n"
                       "Case, make_env = m.Case, m.make_env\n"
                       "CASES = m.CASES + [Case('selftest | segfault', 's', 's', 'import ctypes\\nctypes.string_at(0)',"
                       " 'ValueError', ''), Case('selftest | after', 's', 's', 'x = 1', None, '')]\n")
    runner = tmp_path / "badinput_runner.py"
    runner.write_text(open(RUNNER).read().replace("HERE = os.path.dirname(os.path.abspath(__file__))",
                                                  f"HERE = {str(tmp_path)!r}"))
    monkeypatch.setattr(sys.modules[__name__], "RUNNER", str(runner))
    res = _run_chunk(["selftest | segfault", "selftest | after"])
    assert res["selftest | segfault"]["outcome"] == "crash"
    assert res["selftest | after"]["outcome"] == "ok"


if __name__ == "__main__":
    res = run_all()
    failed = [(c, verdict(c, res[c.id])[1]) for c in bc.CASES if not verdict(c, res[c.id])[0]]
    for c, why in failed:
        print(f"FAIL {c.id}: {why.splitlines()[0] if why else ''}")
    print(summary(res))
    sys.exit(1 if failed else 0)


def test_runners_import_the_same_build():
    """The runners must test the aerec this pytest imports (in CI: the installed wheel with its
    compiled module), not a source tree without one, where every case would run on NumPy."""
    code = "import aerec; print(aerec.__file__); print(aerec.backends.available()['cpp'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    path, has_cpp = out.stdout.split()
    assert os.path.samefile(path, aerec.__file__)
    assert has_cpp == str(aerec.backends.available()["cpp"])
