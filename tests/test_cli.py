"""The command line, run as a user runs it: ``python -m aerec ...`` in a subprocess."""
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import aerec

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--users", "120", "--items", "40", "--density", "0.15"]


def run(*argv, env=None, umask=None, timeout=300, cwd=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    e.update(env or {})
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "aerec", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=e, preexec_fn=pre, cwd=cwd)


def _fake_ml100k(folder: pathlib.Path, n_users=80, n_items=30, seed=0):
    """A u.data in MovieLens-100K's layout (user \\t item \\t rating \\t timestamp), 1-based ids."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, n_users + 1):
        for i in rng.choice(n_items, size=6, replace=False) + 1:
            lines.append(f"{u}\t{i}\t{rng.integers(1, 6)}\t{880000000 + len(lines)}")
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    return folder


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"aerec {aerec.__version__}"


@pytest.mark.parametrize("command, shown", [
    ("train", ["(default: 50)", "(default: MultVAE)", "(default: synthetic)", "(default: 6000)",
               "(default: auto)", "--threads", "min(500, users // 10)"]),
    ("demo", ["(default: 15)", "(default: 600)", "--backend"]),
    ("evaluate", ["(default: synthetic)", "--backend", "--threads"]),
    ("recommend", ["(default: 10)", "--backend"]),
])
def test_help_shows_defaults(command, shown):
    out = run(command, "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())  # argparse wraps lines
    for s in shown:
        assert s in text, (s, out.stdout)
    assert "(default: None)" not in text
    if command == "evaluate":  # training options are not offered
        assert "--epochs" not in text and "--batch-size" not in text


def test_evaluate_rejects_training_only_flags(tmp_path):
    path = tmp_path / "m.npz"
    assert run("train", "--model", "Popularity", *SMALL, "-o", path).returncode == 0
    for flag in (["--epochs", "5"], ["--batch-size", "8"], ["--anneal-steps", "10"], ["--model", "EASE"]):
        out = run("evaluate", path, *SMALL, *flag)
        assert out.returncode == 2 and "is a training option" in out.stderr and flag[0] in out.stderr, out.stderr
    out = run("evaluate", path, *SMALL)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^ndcg\s+\d\.\d{4}\s+\d\.\d{4}\s+\d\.\d{4}$", out.stdout, re.M), out.stdout


def test_heldout_users_beyond_the_data_is_an_error():
    out = run("train", "--model", "Popularity", *SMALL, "--heldout-users", "60")
    assert out.returncode == 2
    assert "--heldout-users 60" in out.stderr and "120 users" in out.stderr and "59 or fewer" in out.stderr
    assert "Traceback" not in out.stderr
    ok = run("train", "--model", "Popularity", *SMALL, "--heldout-users", "59")
    assert ok.returncode == 0, ok.stderr


def test_data_accepts_a_movielens_folder(tmp_path):
    parent = tmp_path / "data"
    _fake_ml100k(parent / "ml-100k")
    for data in (parent / "ml-100k", parent):  # the folder itself, or the folder holding ml-100k/
        out = run("train", "--model", "Popularity", "--data", data, "--heldout-users", "10", "--threshold", "1")
        assert out.returncode == 0, out.stderr
        assert "Popularity fitted" in out.stdout and "recall" in out.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run("train", "--model", "Popularity", "--data", empty)
    assert out.returncode == 2 and "u.data" in out.stderr and "PATH.csv" in out.stderr, out.stderr


def test_data_real_movielens_folder(ml100k_dir):
    out = run("train", "--model", "Popularity", "--data", ml100k_dir, "--threshold", "4", "--heldout-users", "50")
    assert out.returncode == 0, out.stderr
    assert "Popularity fitted" in out.stdout


def test_offline_movielens_says_where_to_put_the_files(tmp_path):
    env = {"AEREC_DATA": str(tmp_path / "data"), "AEREC_CACHE": str(tmp_path / "cache"),
           # no network: every download goes to a closed local port and is refused at once
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
    out = run("train", "--data", "ml-100k", env=env, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "URLError" not in out.stderr
    assert "could not download ml-100k" in out.stderr and "AEREC_DATA" in out.stderr
    assert str(tmp_path / "data" / "ml-100k" / "u.data") in out.stderr  # the exact place to put it


def test_backend_and_threads(tmp_path):
    from aerec import cli
    args = cli.build_parser().parse_args(["train", "--model", "EASE", "--backend", "numpy", "--threads", "1"])
    assert cli._make_model("EASE", args).backend == "numpy" and args.threads == 1
    code = ("import aerec, sys\nfrom aerec import cli\n"
            "rc = cli.main(['train', '--model', 'EASE', '--users', '120', '--items', '40', '--density', '0.15', "
            "'--backend', 'numpy', '--threads', '1'])\n"
            "assert rc == 0 and aerec.get_num_threads() == 1, rc\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "m.npz"
    assert run("train", "--model", "Popularity", *SMALL, "-o", path, "--backend", "numpy").returncode == 0
    known = [str(u) for u in aerec.load(path).id_maps_[0].raw_ids[:2]]  # --user takes raw ids where the model has them
    out = run("recommend", path, "--user", *known, "--k", "3", "--backend", "numpy", "--threads", "1")
    assert out.returncode == 0 and out.stdout.count("user ") == 2, out.stderr
    bad = run("train", "--backend", "gpu")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    bad = run("train", "--threads", "-1")
    assert bad.returncode == 2 and ">= 0" in bad.stderr


def test_info_describes_a_model_file(tmp_path):
    path = tmp_path / "vae.npz"
    out = run("train", "--model", "MultVAE", *SMALL, "--epochs", "2", "--heldout-users", "10", "-o", path)
    assert out.returncode == 0, out.stderr
    info = run("info", path)
    assert info.returncode == 0, info.stderr
    text = info.stdout
    header = aerec.io.read_model_file(path)[1]
    n_users, n_items = header["dims"]["n_users"], header["dims"]["n_items"]
    assert re.search(r"^class\s+MultVAE$", text, re.M)
    assert re.search(r"^aerec version\s+", text, re.M)
    assert f"{n_users:,} users x {n_items:,} items" in text
    assert re.search(r"^\s+epochs\s+2$", text, re.M) and re.search(r"^\s+total_anneal_steps\s+'auto'$", text, re.M)
    assert re.search(r"^training\s+2 epochs; last: loss=", text, re.M) and "val_ndcg@100=" in text
    assert re.search(rf"^\s+encoder\.0\.weight\s+float32\s+\({n_items}, 600\)", text, re.M)
    from aerec.cli import _size
    assert "checksum OK" in text and f"model file, {_size(os.path.getsize(path))}," in text
    # not a model file: a clear error, no traceback
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    bad = run("info", other)
    assert bad.returncode == 2 and "not an aerec model file" in bad.stderr and "Traceback" not in bad.stderr
    missing = run("info", tmp_path / "none.npz")
    assert missing.returncode == 2 and "No such file" in missing.stderr
    # without a file: the configuration, as before
    cfg = run("info")
    assert cfg.returncode == 0 and "backends" in cfg.stdout


def test_info_reads_the_file_without_building_the_model(tmp_path, monkeypatch, capsys):
    from aerec import cli
    path = tmp_path / "p.npz"
    aerec.Popularity().fit(aerec.datasets.synthetic(n_users=50, n_items=20, density=0.2, random_state=0)).save(path)

    def boom(*a, **k):
        raise AssertionError("info must not rebuild the model")
    monkeypatch.setattr(aerec.Popularity, "_from_state", classmethod(boom))
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "class          Popularity" in out and "hyper-parameters: none" in out and "item_counts_" in out


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640)])
def test_model_files_follow_the_umask(tmp_path, umask, mode):
    path = tmp_path / "m.npz"
    out = run("train", "--model", "Popularity", *SMALL, "-o", path, umask=umask)
    assert out.returncode == 0, out.stderr
    assert os.stat(path).st_mode & 0o777 == mode
    assert os.listdir(tmp_path) == ["m.npz"]  # no temporary file left


def test_python_dash_m_aerec_and_cli_module_agree():
    a = run("--version")
    b = subprocess.run([sys.executable, "-m", "aerec.cli", "--version"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT / "python")), timeout=120)
    assert a.stdout == b.stdout and a.returncode == b.returncode == 0


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_mode_without_proc(tmp_path, monkeypatch, umask):
    """Where /proc/self/status cannot be read, the umask still decides (it used to fall back to 022,
    which made files world-readable for a user whose umask is 077)."""
    import builtins
    from aerec import io as aio
    real_open = builtins.open

    def no_proc(file, *a, **kw):
        if str(file).startswith("/proc/"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **kw)
    old = os.umask(umask)
    try:
        monkeypatch.setattr(builtins, "open", no_proc)
        assert aio._current_umask() == umask
        path = tmp_path / "m.npz"
        aerec.Popularity().fit(aerec.datasets.synthetic(n_users=30, n_items=10, density=0.3,
                                                        random_state=0)).save(path)
        assert os.umask(umask) == umask  # put back as it was
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


# -- aerec recommend: raw ids, titles, batch scoring to a file ---------------------------------------

def _raw_id_model(tmp_path, n_users=57, n_items=23, seed=0):
    """An EASE fitted on string raw ids (u-0.., i-0..), saved; and the model itself."""
    from aerec.data import Interactions
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        for i in rng.choice(n_items, size=5, replace=False):
            users.append(f"u-{u}")
            items.append(f"i-{i}")
    inter = Interactions.from_arrays(np.array(users, dtype=object), np.array(items, dtype=object))
    model = aerec.models.EASE(l2=5.0).fit(inter)
    path = tmp_path / "m.npz"
    model.save(path)
    return path, aerec.load(path)


def _expected_rows(model, k):
    umap, imap = model.id_maps_
    n = model.train_.shape[0]
    ids, scores = model.recommend(np.arange(n), k=k)
    rows = []
    for u in range(n):
        for r, (i, s) in enumerate(zip(ids[u], scores[u]), 1):
            if i >= 0:
                rows.append((str(umap.to_raw([u])[0]), r, str(imap.to_raw([i])[0]), float(s)))
    return rows


def test_recommend_prints_raw_ids(tmp_path):
    path, model = _raw_id_model(tmp_path)
    out = run("recommend", path, "--user", "u-3", "u-10", "--k", "4")
    assert out.returncode == 0, out.stderr
    ids, _ = model.recommend_raw(["u-3", "u-10"], k=4)
    assert "user u-3:" in out.stdout and "user u-10:" in out.stdout
    listed = re.findall(r"^\s+\d+\. (\S+)\s", out.stdout, flags=re.M)
    assert listed == [str(x) for x in ids[0]] + [str(x) for x in ids[1]]
    bad = run("recommend", path, "--user", "nobody")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nobody" in bad.stderr


def test_recommend_shows_movielens_titles(tmp_path):
    folder = _fake_ml100k(tmp_path / "ml")
    (folder / "u.item").write_text("".join(f"{i}|Film {i} (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 19)
                                           + "\n" for i in range(1, 31)), encoding="latin-1")
    model_path = tmp_path / "m.npz"
    t = run("train", "--model", "EASE", "--data", folder, "--heldout-users", "5", "-o", model_path)
    assert t.returncode == 0, t.stderr
    out = run("recommend", model_path, "--user", "1", "--k", "3", "--titles", folder)
    assert out.returncode == 0, out.stderr
    lines = re.findall(r"^\s+\d+\. (\d+)\s+\S+\s+Film (\d+) \(1995\)$", out.stdout, flags=re.M)
    assert len(lines) == 3 and all(a == b for a, b in lines), out.stdout


def test_recommend_all_to_csv_equals_recommend(tmp_path):
    import csv
    path, model = _raw_id_model(tmp_path)
    out_csv = tmp_path / "recs.csv"
    out = run("recommend", path, "--all", "--output", out_csv, "--k", "7", "--batch-size", "10")
    assert out.returncode == 0, out.stderr
    with open(out_csv, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["user", "rank", "item", "score"]
    got = [(u, int(r), i, float(s)) for u, r, i, s in rows[1:]]
    want = _expected_rows(model, 7)
    assert [g[:3] for g in got] == [w[:3] for w in want]
    np.testing.assert_allclose([g[3] for g in got], [w[3] for w in want], rtol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".recs")]  # no temp file left


def test_recommend_all_to_parquet_equals_recommend(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    path, model = _raw_id_model(tmp_path)
    out_pq = tmp_path / "recs.parquet"
    out = run("recommend", path, "--all", "--output", out_pq, "--k", "5", "--batch-size", "8")
    assert out.returncode == 0, out.stderr
    t = pq.read_table(out_pq).to_pydict()
    want = _expected_rows(model, 5)
    assert list(zip(t["user"], t["rank"], t["item"])) == [w[:3] for w in want]
    np.testing.assert_allclose(t["score"], [w[3] for w in want], rtol=1e-6)


def test_recommend_all_parquet_without_pyarrow_names_the_extra(tmp_path):
    path, _ = _raw_id_model(tmp_path)
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "pyarrow.py").write_text("raise ImportError('blocked for the test')\n")
    out = run("recommend", path, "--all", "--output", tmp_path / "r.parquet",
              env={"PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT / "python")])})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "aerec[parquet]" in out.stderr and "csv" in out.stderr.lower()
    assert not (tmp_path / "r.parquet").exists()


@pytest.mark.parametrize("argv, says", [
    (["--user", "u-1", "--k", "0"], "must be >= 1"),
    (["--all", "--output", "{tmp}/no/such/folder/r.csv"], "does not exist"),
    (["--all", "--output", "{tmp}/r.txt"], ".csv or .parquet"),
    (["--all"], "--output"),
    ([], "--user"),
])
def test_recommend_bad_input_is_one_clear_line(tmp_path, argv, says):
    path, _ = _raw_id_model(tmp_path)
    out = run("recommend", path, *[a.format(tmp=tmp_path) for a in argv])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert says in out.stderr.strip().splitlines()[-1]
    missing = run("recommend", tmp_path / "nope.npz", "--user", "1")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "nope.npz" in missing.stderr


def test_recommend_model_saved_without_history_is_a_clear_error(tmp_path):
    path, model = _raw_id_model(tmp_path)
    model.save(tmp_path / "nh.npz", include_history=False)
    for argv in (["--user", "u-1"], ["--all", "--output", tmp_path / "r.csv"]):
        out = run("recommend", tmp_path / "nh.npz", *argv)
        assert out.returncode == 2 and "Traceback" not in out.stderr and "include_history=False" in out.stderr
    assert not (tmp_path / "r.csv").exists()
