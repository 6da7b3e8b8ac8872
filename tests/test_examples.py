"""The shipped example runs end to end (tutorial part always; MovieLens part when the data is here)."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_item_features_example(ml100k_dir):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "item_features_autoencoder.py"), str(ml100k_dir)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "tutorial: 100 epochs" in out.stdout
    assert 'most similar to "Toy Story (1995)"' in out.stdout
    assert out.stdout.count("cos=") == 10


def test_cli_demo_small():
    out = subprocess.run([sys.executable, "-m", "aerec.cli", "demo", "--users", "600", "--items", "300",
                          "--epochs", "2", "--heldout-users", "50"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Popularity" in out.stdout and "MultVAE" in out.stdout


def test_cli_bad_input_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "aerec.cli", "recommend", str(tmp_path / "missing.npz"),
                          "--user", "0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "aerec: error" in out.stderr
