"""``report(model, test, variants)``: size, memory, speed and accuracy of compressed variants
side by side with the original, as a printable table (and a PNG)."""
from __future__ import annotations

import math
import os
import tempfile
import time
import tracemalloc

import numpy as np

from ..evaluation import _cell, _html, _pandas, _table
from ._api import is_compressed, weight_nbytes

__all__ = ["report", "CompressionReport"]


class CompressionReport:
    """What :func:`report` returns: one row per variant (the original first), a read-only mapping
    ``name -> row dict``; prints as an aligned table; ``to_dict()``, ``to_frame()`` (pandas) and
    ``plot(path)`` (matplotlib) convert it.

    Row keys: ``weight_bytes``, ``file_bytes``, ``peak_ram_bytes``, ``users_per_s`` and the accuracy
    columns (``ndcg@100``, ``recall@20``, ...; AutoRec ``rmse``; Autoencoder ``mse``), each also as
    ``<key>_vs_original``: a ratio for sizes and speed, a difference for accuracy.
    """

    def __init__(self, rows: dict, accuracy: tuple, higher_is_better: bool, n_users: int, note: str):
        self.rows, self.accuracy, self.higher_is_better = rows, tuple(accuracy), higher_is_better
        self.n_users, self.note = n_users, note

    def __getitem__(self, name) -> dict:
        if name not in self.rows:
            raise KeyError(f"no variant named {name!r}; the report has {list(self.rows)}")
        return dict(self.rows[name])

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, name) -> bool:
        return name in self.rows

    def keys(self):
        return self.rows.keys()

    def items(self):
        return [(n, dict(r)) for n, r in self.rows.items()]

    def to_dict(self) -> dict:
        """``{variant: {column: value}}`` (plain floats and ints)."""
        return {n: dict(r) for n, r in self.rows.items()}

    def to_frame(self):
        """A pandas DataFrame, one row per variant (index ``variant``). Needs pandas."""
        pd = _pandas("CompressionReport")
        return pd.DataFrame.from_dict(self.to_dict(), orient="index").rename_axis("variant")

    def __str__(self) -> str:
        acc = list(self.accuracy)
        header = ["variant", "weights", "x orig", "file", "x orig", "peak RAM", "users/s", "x orig"]
        for a in acc:
            header += [a, "diff"]
        rows = []
        for name, r in self.rows.items():
            row = [name, _bytes(r["weight_bytes"]), f"{r['weight_bytes_vs_original']:.3f}",
                   _bytes(r["file_bytes"]), f"{r['file_bytes_vs_original']:.3f}", _bytes(r["peak_ram_bytes"]),
                   f"{r['users_per_s']:,.0f}", f"{r['users_per_s_vs_original']:.2f}"]
            for a in acc:
                row += [_cell(r[a]), f"{r[a + '_vs_original']:+.4f}"]
            rows.append(row)
        better = "higher" if self.higher_is_better else "lower"
        foot = (f"{self.n_users} users; x orig = ratio to the original; diff = variant - original ({better} "
                f"accuracy is better); peak RAM = Python heap peak (tracemalloc) loading the file and serving "
                f"the users; {self.note}")
        return _table(header, rows) + "\n" + foot

    __repr__ = __str__
    _repr_html_ = _html

    def plot(self, path="compression.png", *, dpi: int = 100) -> str:
        """Save a PNG: accuracy against weight bytes and against recommend throughput, one point
        per variant (needs matplotlib: ``pip install 'aerec[plot]'``). Returns ``path``."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("CompressionReport.plot needs matplotlib, which is not installed: pip install "
                              "'aerec[plot]' (or pip install matplotlib); the table itself needs nothing") from None
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"folder {folder!r} does not exist; create it before plotting")
        metric = self.accuracy[0]
        fig = Figure(figsize=(10, 4), dpi=dpi)
        for ax, key, label in ((fig.add_subplot(1, 2, 1), "weight_bytes", "weights (MiB)"),
                               (fig.add_subplot(1, 2, 2), "users_per_s", "recommend users/s")):
            for i, (name, r) in enumerate(self.rows.items()):
                x = r[key] / 2 ** 20 if key == "weight_bytes" else r[key]
                ax.scatter([x], [r[metric]], s=40, marker="*" if name == "original" else "o")
                # alternate the labels above and below: variants of equal accuracy sit side by side
                ax.annotate(name, (x, r[metric]), textcoords="offset points", xytext=(5, 5 if i % 2 else -11),
                            fontsize=8)
            ax.set_xlabel(label)
            ax.set_ylabel(metric)
            ax.grid(True, alpha=0.3)
        fig.suptitle(f"accuracy vs size and speed ({self.n_users} users)")
        fig.tight_layout()
        from ..io import atomic_write
        with atomic_write(path) as f:
            fig.savefig(f, format="png")
        return path


def _bytes(n) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _kind_of(model) -> str:
    name = type(model).__name__
    return {"AutoRec": "ratings", "Autoencoder": "dense"}.get(name, "ranking")


def _file_bytes(model, folder) -> tuple[int, str]:
    path = os.path.join(folder, f"variant-{id(model)}.npz")
    if _kind_of(model) == "ranking":
        model.save(path, include_history=False)  # a serving artefact: weights only
    else:  # the Autoencoder has no history; AutoRec predicts from its ratings, so its file holds them
        model.save(path)
    return os.path.getsize(path), path


def _measure(model, path, test, kind, ks, batch_size, repeats):
    """(accuracy dict, users/s, peak RAM bytes) of one variant."""
    from .. import load
    from ..evaluation import _evaluate
    if kind == "ranking":
        evalset = test.test if hasattr(test, "test") and hasattr(test, "train") else test
        users = evalset.fold_in
        model.recommend(user_items=users[: min(64, users.shape[0])], k=max(ks))  # warm-up (index builds, JIT)
        best = math.inf
        res = None
        for _ in range(repeats):
            res, seconds = _evaluate(model, evalset, ks, batch_size=batch_size, on="test",
                                     metrics=("recall", "ndcg"), per_user=False, recall_denominator="min_k")
            best = min(best, seconds)
        acc = {k: float(v) for k, v in res.items() if "@" in k}
        n = users.shape[0]

        def serve(m):
            m.recommend(user_items=users[:batch_size], k=max(ks))
    elif kind == "ratings":
        from .._validation import as_csr
        R = as_csr(test, "test", n_cols=model.train_.shape[1])
        u, i = R.nonzero()
        r = np.asarray(R[u, i]).ravel()
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            model._recon = None  # time the reconstruction too, not a cache
            pred = model.predict_ratings(u, i)
            best = min(best, time.perf_counter() - t0)
        acc = {"rmse": float(np.sqrt(np.mean((pred - r) ** 2)))}
        n = model.train_.shape[0]

        def serve(m):
            m.predict_ratings(u[:batch_size], i[:batch_size])
    else:
        x = np.ascontiguousarray(test, dtype=np.float32)
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model.predict(x)
            best = min(best, time.perf_counter() - t0)
        acc = {"mse": float(np.mean((out.astype(np.float64) - x) ** 2))}
        n = x.shape[0]

        def serve(m):
            m.predict(x[:batch_size])
    tracemalloc.start()
    try:
        serve(load(path, backend=getattr(model, "backend", "auto")))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return acc, n / max(best, 1e-12), int(peak)


def report(model, test, variants, *, ks=(20, 100), batch_size=1024, repeats=1, plot=None):
    """Compare compressed variants with their original: size, file size, memory, speed, accuracy.

    Parameters
    ----------
    model : fitted aerec model
        the original (fp32), the first row.
    test : EvalSet or Split (ranking models), sparse ratings (AutoRec), or a dense array (Autoencoder)
        what accuracy is measured on: NDCG / Recall at ``ks`` over the test users, folded in from
        their histories (MultDAE, MultVAE, CDAE, EASE); RMSE of the test ratings (AutoRec, of
        training users and items); reconstruction MSE (Autoencoder).
    variants : dict of name -> model
        the compressed models (e.g. ``{"int8": compress.quantize(model)}``), same class as
        ``model``.
    ks : tuple of int, default (20, 100)
        ranking cut-offs: the table shows ``ndcg@max(ks)`` and ``recall@min(ks)``.
    batch_size : int, default 1024
        users per ``recommend`` call (and the batch the memory peak is measured on).
    repeats : int >= 1, default 1
        timed passes per variant (the fastest counts).
    plot : str or path, optional
        also write :meth:`CompressionReport.plot` there (needs matplotlib).

    Returns
    -------
    CompressionReport
        rows: the original and each variant; columns ``weight_bytes``, ``file_bytes`` (the file
        ``save`` writes: ``include_history=False`` for the ranking models), ``peak_ram_bytes``
        (tracemalloc's peak while loading the file and serving one batch: weights plus
        inference temporaries, Python-allocated), ``users_per_s`` (the evaluation's
        ``recommend`` throughput), the accuracy columns, and each ``*_vs_original``.
    """
    from .._validation import check_k, check_positive_int
    if not isinstance(variants, dict) or not variants:
        raise TypeError("variants must be a non-empty dict of name -> compressed model, e.g. "
                        "{'int8': compress.quantize(model)}")
    if is_compressed(model):
        raise ValueError("model must be the original (uncompressed) model the variants were made from")
    ks = (ks,) if isinstance(ks, (int, np.integer)) else tuple(ks)
    if not ks:
        raise ValueError("ks must name at least one cut-off, e.g. (20, 100)")
    ks = tuple(sorted({check_k(k) for k in ks}))
    batch_size = check_positive_int(batch_size, "batch_size", hi=None)
    repeats = check_positive_int(repeats, "repeats", hi=1000)
    weight_nbytes(model)  # fitted?
    for name, v in variants.items():
        if not isinstance(name, str) or not name or name == "original":
            raise ValueError(f"variant names must be non-empty strings other than 'original', got {name!r}")
        if type(v) is not type(model):
            raise TypeError(f"variant {name!r} is a {type(v).__name__}, the original a {type(model).__name__}; "
                            "compare variants of one model")
    kind = _kind_of(model)
    if kind == "ranking":
        accuracy = (f"ndcg@{ks[-1]}", f"recall@{ks[0]}")
        higher = True
    else:
        accuracy = ("rmse",) if kind == "ratings" else ("mse",)
        higher = False
    rows, n_users = {}, 0
    with tempfile.TemporaryDirectory(prefix="aerec-report-") as folder:
        for name, m in [("original", model), *variants.items()]:
            fbytes, path = _file_bytes(m, folder)
            acc, ups, peak = _measure(m, path, test, kind, ks, batch_size, repeats)
            row = {"weight_bytes": int(weight_nbytes(m)), "file_bytes": int(fbytes), "peak_ram_bytes": peak,
                   "users_per_s": float(ups)}
            row.update({a: acc[a] for a in accuracy})
            comp = getattr(m, "compression_", None) or {}
            row["precision"] = comp.get("precision", "fp32")
            row["pruning"] = comp.get("pruning") or "-"
            row["sparsity"] = float(comp.get("sparsity", 0.0))
            rows[name] = row
        if kind == "ranking":
            ev = test.test if hasattr(test, "test") and hasattr(test, "train") else test
            n_users = int(ev.fold_in.shape[0])
        else:
            n_users = int(test.shape[0] if kind == "dense" else model.train_.shape[0])
    base = rows["original"]
    for r in rows.values():
        for key in ("weight_bytes", "file_bytes", "peak_ram_bytes", "users_per_s"):
            r[f"{key}_vs_original"] = r[key] / base[key] if base[key] else float("nan")
        for a in accuracy:
            r[f"{a}_vs_original"] = r[a] - base[a]
    from .._config import config  # the ISA level belongs beside every speed figure
    note = f"backend {getattr(model, 'backend', 'auto')}, ISA {config().get('isa_active') or 'n/a (no _core)'}"
    out = CompressionReport(rows, accuracy, higher, n_users, note)
    if plot is not None:
        out.plot(plot)
    return out
