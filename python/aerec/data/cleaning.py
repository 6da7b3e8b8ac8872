"""Validation and cleaning of raw interaction columns (missing ids, bad values, bad timestamps).

Everything here is vectorised; Python loops only touch object-dtype columns (which are slow anyway).
"""
from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np

__all__ = ["CleaningReport", "DataWarning"]

logger = logging.getLogger("aerec.data")

# Reasons a row can be dropped, in the order they are checked (a row counts under its first reason).
REASONS = (
    "missing_user",
    "missing_item",
    "bad_value",       # NaN, inf or negative value
    "zero_value",      # explicit zero: no interaction in a sparse matrix
    "bad_timestamp",   # missing, unparsable, non-finite or negative timestamp
    "unknown_user",    # raw id absent from a given user map (only with unknown="drop")
    "unknown_item",
    "duplicate",       # repeated (user, item) pair; one row is kept
    "below_threshold",  # binarize(threshold): value < threshold
    "min_count",       # filter(min_user_count, min_item_count)
)

_DESCRIPTIONS = {
    "missing_user": "missing user id",
    "missing_item": "missing item id",
    "bad_value": "NaN/inf/negative value",
    "zero_value": "zero value",
    "bad_timestamp": "missing/invalid/negative timestamp",
    "unknown_user": "user id not in the given user map",
    "unknown_item": "item id not in the given item map",
    "duplicate": "duplicate (user, item) pair",
    "below_threshold": "value below the binarize threshold",
    "min_count": "user/item below the minimum count",
}


class DataWarning(UserWarning):
    """Rows were dropped while cleaning interaction data (the message says how many and why)."""


@dataclasses.dataclass
class CleaningReport:
    """What cleaning did: rows in, rows out, and how many were dropped for each reason.

    Attributes
    ----------
    n_input : int
        Rows given.
    n_output : int
        Entries kept (the ``nnz`` of the result).
    dropped : dict[str, int]
        Reason -> rows dropped for that reason (only reasons with a non-zero count). A row counts
        under the first reason it fails, checked in the order of ``aerec.data.cleaning.REASONS``.
    steps : list[str]
        Human-readable log of the operations applied (cleaning, binarize, filter...).
    """

    n_input: int = 0
    n_output: int = 0
    dropped: dict = dataclasses.field(default_factory=dict)
    steps: list = dataclasses.field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        return int(sum(self.dropped.values()))

    def add(self, reason: str, count: int) -> None:
        if reason not in _DESCRIPTIONS:
            raise ValueError(f"unknown reason {reason!r}")
        count = int(count)
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    def to_dict(self) -> dict:
        return {"n_input": self.n_input, "n_output": self.n_output, "dropped": dict(self.dropped),
                "steps": list(self.steps)}

    def summary(self) -> str:
        if not self.dropped:
            return f"kept all {self.n_input} rows"
        parts = ", ".join(f"{c} {_DESCRIPTIONS[r]}" for r, c in self.dropped.items())
        return f"kept {self.n_output} of {self.n_input} rows; dropped {self.n_dropped}: {parts}"

    def __str__(self) -> str:
        return self.summary()

    def copy(self) -> "CleaningReport":
        return CleaningReport(self.n_input, self.n_output, dict(self.dropped), list(self.steps))


def emit(report: CleaningReport, on_invalid: str, what: str = "cleaning") -> None:
    """Log the summary; warn (``DataWarning``) when rows were dropped and ``on_invalid == 'warn'``."""
    msg = f"aerec.data {what}: {report.summary()}"
    logger.info(msg)
    if on_invalid == "warn" and report.n_dropped:
        warnings.warn(msg + " (pass on_invalid='drop' to silence, 'raise' to fail)", DataWarning,
                      stacklevel=3)


# -- column normalisation -------------------------------------------------------------------------

def _is_missing_obj(x) -> bool:
    if x is None:
        return True
    if isinstance(x, float) and x != x:
        return True
    if isinstance(x, (str, bytes)) and len(x.strip()) == 0:
        return True
    # pandas.NA / NaT without importing pandas
    name = type(x).__name__
    return name in ("NAType", "NaTType")


def id_column(raw, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, missing-mask). ``ids`` has one comparable dtype; entries under the mask are garbage."""
    from .idmap import asarray_ids
    if raw is None:
        raise TypeError(f"{name} is None; pass a 1-D sequence of ids (one per interaction)")
    arr = asarray_ids(raw)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    n = arr.shape[0]
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} ids must be integers or strings, got booleans")
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and n and int(arr.max()) > 2 ** 63 - 1:
            return arr.astype(np.uint64, copy=False), np.zeros(n, dtype=bool)  # no wrap-around
        return arr.astype(np.int64, copy=False), np.zeros(n, dtype=bool)
    if arr.dtype.kind == "f":
        missing = ~np.isfinite(arr)
        good = arr[~missing]
        if good.size and (not np.all(good == np.floor(good)) or np.abs(good).max() >= 2.0 ** 63):
            return arr.astype(np.float64), missing  # not integers (or beyond int64): keep as floats
        out = np.where(missing, 0, arr).astype(np.int64)
        return out, missing
    if arr.dtype.kind in "US":
        stripped = np.char.strip(arr)
        missing = stripped == ("" if arr.dtype.kind == "U" else b"")
        return stripped, missing
    if arr.dtype.kind == "O":
        missing = np.frompyfunc(_is_missing_obj, 1, 1)(arr).astype(bool) if n else np.zeros(0, bool)
        from .idmap import infer_object_ids
        inferred = infer_object_ids(arr[~missing].tolist(), f"{name[:-1] if name.endswith('s') else name} ids")
        out = np.zeros(n, dtype=inferred.dtype) if inferred.dtype.kind != "U" else \
            np.full(n, "", dtype=inferred.dtype)
        out[~missing] = inferred
        if out.dtype.kind == "f":
            return id_column(np.where(missing, np.nan, out), name)
        if out.dtype.kind == "i":
            out = out.astype(np.int64)
        return out, missing
    if arr.dtype.kind == "M":
        raise TypeError(f"{name} ids must be integers or strings, got datetimes")
    raise TypeError(f"{name} ids must be integers or strings, got dtype {arr.dtype}")


def _to_float(arr: np.ndarray, name: str) -> np.ndarray:
    """Float64 column; unparsable / missing entries become NaN."""
    if arr.dtype.kind in "iub":
        return arr.astype(np.float64)
    if arr.dtype.kind == "f":
        return arr.astype(np.float64, copy=False)
    if arr.dtype.kind in "USO":
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError):
            def conv(x):
                if _is_missing_obj(x):
                    return np.nan
                try:
                    return float(x)
                except (TypeError, ValueError):
                    return np.nan
            return np.frompyfunc(conv, 1, 1)(arr).astype(np.float64)
    raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")


def value_column(raw, n: int) -> np.ndarray:
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"values has {arr.shape[0]} rows but users/items have {n}")
    if arr.dtype.kind == "M":
        raise TypeError("values must be numeric, got datetimes")
    return _to_float(arr, "values")


def timestamp_column(raw, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 seconds since the Unix epoch, bad-mask). Accepts numbers, datetime64 and ISO strings."""
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise ValueError(f"timestamps must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"timestamps has {arr.shape[0]} rows but users/items have {n}")
    if arr.dtype.kind == "M":
        bad = np.isnat(arr)
        secs = arr.astype("datetime64[s]").astype(np.int64)
        secs = np.where(bad, 0, secs)
        return secs, bad
    if arr.dtype.kind in "iu":
        ts = arr.astype(np.int64)
        return ts, ts < 0
    if arr.dtype.kind in "USO":
        f = _to_float(arr, "timestamps")
        unparsed = np.isnan(f)
        if np.any(unparsed):
            # try ISO-8601 date strings for the entries that are not numbers
            sub = arr[unparsed]
            parsed = np.full(sub.shape[0], np.datetime64("NaT"), dtype="datetime64[s]")
            for j, x in enumerate(sub.tolist()):
                if _is_missing_obj(x):
                    continue
                try:
                    parsed[j] = np.datetime64(str(x).strip(), "s")
                except (ValueError, TypeError):
                    pass
            ok = ~np.isnat(parsed)
            vals = f[unparsed]
            vals[ok] = parsed[ok].astype(np.int64)
            f[unparsed] = vals
        arr = f
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr < 0) | (np.abs(arr) > 2.0 ** 62)
        ts = np.where(bad, 0, np.floor(np.where(bad, 0, arr))).astype(np.int64)
        return ts, bad
    raise TypeError(f"timestamps must be numbers, datetime64 or ISO strings, got dtype {arr.dtype}")
