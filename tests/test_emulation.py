"""aerec on every x86-64 CPU (issue 7 section 1).

- Every dispatch level reachable through AEREC_ISA (environment, read once per process) caps the
  level and gives the same answers: one subprocess per level, compared with the scalar level.
- The CPU-emulation smoke suite (tests/emulation/smoke.py) under qemu-x86_64 -cpu Haswell (AVX2,
  no AVX-512) and -cpu Nehalem (no AVX): marked ``emulation`` and skipped unless selected with
  ``-m emulation`` (slow; CI runs the script directly, so it is not run twice there).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import aerec

core = pytest.importorskip("aerec._core")

HERE = Path(__file__).resolve().parent
SMOKE = HERE / "emulation" / "smoke.py"
LEVELS = ("scalar", "avx2", "avx512", "amx")

# One fixed workload; prints JSON so the parent compares levels.
_PROBE = r"""
import json, sys
import numpy as np, scipy.sparse as sp
import aerec
from aerec import _core
aerec.set_num_threads(1)
rng = np.random.default_rng(0)
dense = (rng.random((60, 40)) < 0.2).astype(np.float32)
dense[dense.sum(1) == 0, 0] = 1
X = sp.csr_matrix(dense)
out = {"active": _core.active_isa()}
m = aerec.MultDAE(hidden=(16,), latent=6, epochs=2, batch_size=16, random_state=0).fit(X)
out["multdae_scores"] = m.score_items(np.arange(5)).tolist()
out["ease_scores"] = aerec.EASE(l2=5.0).fit(X).score_items(np.arange(5)).tolist()
x = rng.random((40, 8), dtype=np.float32)
out["ae_pred"] = aerec.Autoencoder(hidden=(4,)).fit(x, epochs=2, batch_size=8).predict(x[:5]).tolist()
items = rng.integers(-4, 5, (90, 12)).astype(np.float32)
queries = rng.integers(-4, 5, (6, 12)).astype(np.float32)
out["topk"] = {p: aerec.TopK(items, precision=p, rescore=20).search(queries, 5)[0].tolist()
               for p in ("fp32", "bf16", "int8")}
print(json.dumps(out))
"""


def _run_probe(isa: str) -> dict:
    env = dict(os.environ, AEREC_ISA=isa)
    res = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, f"AEREC_ISA={isa}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def scalar_probe():
    return _run_probe("scalar")


@pytest.mark.parametrize("isa", LEVELS)
def test_aerec_isa_caps_level_and_results_agree(isa, scalar_probe):
    detected = core.detected_isa()
    expected = LEVELS[min(LEVELS.index(isa), LEVELS.index(detected))]
    got = scalar_probe if isa == "scalar" else _run_probe(isa)
    assert got["active"] == expected
    # Same maths at every level (FMA and lane order change rounding only).
    for key in ("multdae_scores", "ease_scores", "ae_pred"):
        np.testing.assert_allclose(np.array(got[key]), np.array(scalar_probe[key]), rtol=2e-3, atol=2e-4,
                                   err_msg=f"{key} at AEREC_ISA={isa}")
    # Integer-valued vectors, every candidate re-scored: exact, so identical ids.
    assert got["topk"] == scalar_probe["topk"]


def _qemu_python() -> str | None:
    """The interpreter as an ELF file qemu-user can run (a venv's bin/python links to one)."""
    exe = sys.executable
    try:
        with open(exe, "rb") as f:
            return exe if f.read(4) == b"\x7fELF" else None
    except OSError:
        return None


@pytest.mark.emulation
@pytest.mark.parametrize("cpu,isa", [("Haswell", "avx2"), ("Nehalem", "scalar")])
def test_smoke_under_emulated_cpu(cpu, isa):
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-x86_64 not installed (Debian: apt-get install qemu-user)")
    py = _qemu_python()
    if py is None:
        pytest.skip(f"{sys.executable} is not an ELF executable qemu-user can run")
    env = dict(os.environ)
    env.pop("AEREC_ISA", None)
    # The package this interpreter imports (a source checkout on PYTHONPATH, or the installed one).
    env["PYTHONPATH"] = os.pathsep.join([str(Path(aerec.__file__).resolve().parents[1]),
                                         env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    res = subprocess.run([qemu, "-cpu", cpu, py, str(SMOKE), "--expect-isa", isa], env=env,
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"smoke under -cpu {cpu}: exit {res.returncode} (-4 or 132: SIGILL)\n{out[-6000:]}"
    assert " 0 failed" in res.stdout, out[-6000:]
