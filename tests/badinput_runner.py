"""Runs bad-input cases (``tests/badinput_cases.py``) and reports each outcome as one JSON line.

Used by ``tests/test_bad_input.py`` in subprocesses, so a case that kills the interpreter
(segfault, abort, SIGILL) is recorded as a crash of that case and the rest still run::

    python tests/badinput_runner.py CASE_ID [CASE_ID ...]

For each case it prints ``{"start": id}`` before running it and ``{"id", "outcome", "exc", "mro",
"msg"}`` after: outcome "ok" (returned), "raised" (exception class name and its bases) or "hang"
(exceeded the per-case alarm). A missing result line after a start line means the process died.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

PER_CASE_SECONDS = 20


class _Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hang()


def main(ids):
    import warnings
    warnings.simplefilter("ignore")
    import badinput_cases as bc
    table = {c.id: c for c in bc.CASES}
    env = bc.make_env()
    signal.signal(signal.SIGALRM, _alarm)
    out = sys.stdout
    for cid in ids:
        case = table[cid]
        out.write(json.dumps({"start": cid}) + "\n")
        out.flush()
        ns = dict(env)
        rec = {"id": cid}
        signal.alarm(PER_CASE_SECONDS)
        try:
            exec(case.code, ns)
            rec.update(outcome="ok", exc=None, mro=[], msg="")
        except _Hang:
            rec.update(outcome="hang", exc=None, mro=[], msg=f"over {PER_CASE_SECONDS} s")
        except BaseException as exc:  # noqa: BLE001 - every outcome is data here
            rec.update(outcome="raised", exc=type(exc).__name__,
                       mro=[k.__name__ for k in type(exc).__mro__],
                       msg=str(exc)[:2000], tb=traceback.format_exc(limit=4)[-1500:])
        finally:
            signal.alarm(0)
        out.write(json.dumps(rec) + "\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
