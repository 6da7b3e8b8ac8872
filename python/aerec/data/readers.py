"""Delimited text readers (CSV / TSV / MovieLens ``::``). pandas is used when installed (faster and
more forgiving); otherwise ``numpy.loadtxt``."""
from __future__ import annotations

import io
import os

import numpy as np

from ._frames import ITEM_NAMES, TIME_NAMES, USER_NAMES, VALUE_NAMES, pick_column

__all__ = ["read_columns"]

_ROLES = ("user", "item", "value", "timestamp")


def _looks_numeric(field: str) -> bool:
    try:
        float(field)
        return True
    except ValueError:
        return False


def _resolve_columns(columns, header_names, n_fields):
    """Role -> 0-based position (or None)."""
    if columns is None:
        if header_names is not None:
            cands = (USER_NAMES, ITEM_NAMES, VALUE_NAMES, TIME_NAMES)
            out = {}
            for role, cand in zip(_ROLES, cands):
                name = pick_column(header_names, None, cand, role, role in ("user", "item"),
                                   hint=f"name the fields with columns={{'user': ..., 'item': ...}} "
                                        "(header names or 0-based positions)")
                out[role] = None if name is None else header_names.index(name)
            return out
        return {role: (i if i < n_fields else None) for i, role in enumerate(_ROLES)}
    if isinstance(columns, dict):
        unknown = set(columns) - set(_ROLES)
        if unknown:
            raise ValueError(f"columns keys must be among {_ROLES}, got {sorted(unknown)}")
        spec = {role: columns.get(role) for role in _ROLES}
    else:
        if isinstance(columns, (str, bytes)) or not hasattr(columns, "__iter__"):
            raise TypeError(f"columns must be a sequence of 2 to 4 names or positions, or a dict, got {columns!r}")
        columns = list(columns)
        if not 2 <= len(columns) <= 4:
            raise ValueError(f"columns must name 2 to 4 fields (user, item[, value[, timestamp]]), "
                             f"got {columns!r}")
        spec = {role: (columns[i] if i < len(columns) else None) for i, role in enumerate(_ROLES)}
    if spec["user"] is None or spec["item"] is None:
        raise ValueError("columns must give the user and item fields")
    out = {}
    for role, c in spec.items():
        if c is None:
            out[role] = None
        elif isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= c < n_fields:
                raise ValueError(f"{role} column position {c} out of range for {n_fields} fields")
            out[role] = int(c)
        elif isinstance(c, str):
            if header_names is None:
                raise ValueError(f"column name {c!r} given but the file has no header; "
                                 f"use 0-based positions")
            if c not in header_names:
                raise KeyError(f"{role} column {c!r} not found; header is {header_names}")
            out[role] = header_names.index(c)
        else:
            raise TypeError(f"column spec must be a name or a position, got {c!r}")
    return out


def read_columns(path, sep=",", columns=None, header="infer", encoding="utf-8-sig", engine="auto") -> dict:
    """Read a delimited interaction log into raw columns ``{"users", "items", "values", "timestamps"}``.

    ``sep=None`` picks the first of ``"::"``, tab, ``","``, ``";"``, ``"|"`` that splits the first
    line into at least two fields. The default encoding ``utf-8-sig`` reads UTF-8 with or without
    a byte-order mark (Excel writes one); a file in another encoding raises ValueError naming the
    file and the ``encoding=`` to pass.
    """
    if engine not in ("auto", "pandas", "numpy"):
        raise ValueError(f"engine must be 'auto', 'pandas' or 'numpy', got {engine!r}")
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    if not isinstance(encoding, str):
        raise TypeError(f"encoding must be a str such as 'utf-8' or 'latin-1', got {type(encoding).__name__}")
    try:
        import codecs
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}; use e.g. 'utf-8' or 'latin-1'") from None
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; pass the path of the interaction log file in it")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return _read_columns(path, sep, columns, header, encoding, engine)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not valid {encoding} text (byte {exc.object[exc.start:exc.start + 1]!r} "
                         f"at offset {exc.start}); pass the file's encoding, e.g. encoding='latin-1' "
                         "(MovieLens 100K/1M) or encoding='cp1252'") from None


def _parse_error(path, sep, exc) -> ValueError:
    # the parsers' own messages ("invalid column index 2 at row 2") name neither the file nor the fix
    return ValueError(f"{path}: could not parse it as a delimited log ({exc}); check sep= (now {sep!r}), "
                      "columns= and that every line has the same number of fields")


def _read_columns(path, sep, columns, header, encoding, engine) -> dict:
    if sep is None:
        with open(path, "r", encoding=encoding, newline="") as f:
            line = f.readline()
        sep = next((c for c in ("::", "\t", ",", ";", "|") if len(line.split(c)) >= 2), None)
        if sep is None:
            raise ValueError(f"{path}: could not detect the separator from the first line; pass sep=...")
    if not isinstance(sep, str) or not sep:
        raise ValueError(f"sep must be a non-empty string or None (detect), got {sep!r}")
    with open(path, "r", encoding=encoding, newline="") as f:
        first = f.readline()
    multi = len(sep) > 1
    if multi:
        # multi-character separators (MovieLens '::'): rewrite to a tab so the fast parsers apply
        first = first.replace(sep, "\t")
    first = first.rstrip("\r\n")
    if not first.strip():
        raise ValueError(f"{path}: the first line is empty")
    psep = "\t" if multi else sep
    fields = [x.strip().strip('"') for x in first.split(psep)]
    if isinstance(header, str) and header == "infer":
        has_header = not all(_looks_numeric(x) for x in fields[:2])
    elif isinstance(header, (bool, np.bool_)):
        has_header = bool(header)
    else:
        raise ValueError(f"header must be 'infer', True or False, got {header!r}")
    if len(fields) < 2:
        raise ValueError(f"{path}: found {len(fields)} field(s) with sep={sep!r}; is the separator right?")
    names = fields if has_header else None
    pos = _resolve_columns(columns, names, len(fields))
    use = [(role, p) for role, p in pos.items() if p is not None]
    if multi:
        with open(path, "r", encoding=encoding, newline="") as f:
            text = f.read()
        if "\t" in text:
            raise ValueError(f"cannot use separator {sep!r} on a file that also contains tabs")
        text = text.replace(sep, "\t")
        if has_header:
            nl = text.find("\n")
            text = text[nl + 1:] if nl >= 0 else ""

        def source():
            return io.StringIO(text)
        skip = 0
    else:
        def source():
            return path
        skip = 1 if has_header else 0
    if engine in ("auto", "pandas"):
        try:
            import pandas as pd  # noqa: F401
        except ImportError:
            if engine == "pandas":
                from ._frames import require_pandas
                require_pandas()
            engine = "numpy"
        else:
            engine = "pandas"
    cols = {"users": None, "items": None, "values": None, "timestamps": None}
    key = {"user": "users", "item": "items", "value": "values", "timestamp": "timestamps"}

    def empty():
        for role, _ in use:
            cols[key[role]] = np.empty(0, dtype=np.int64 if role in ("user", "item") else np.float64)
        return cols

    if engine == "pandas":
        import pandas as pd
        from ._frames import _series_to_numpy
        usecols = sorted({p for _, p in use})
        try:
            df = pd.read_csv(source(), sep=psep, header=None, skiprows=skip, usecols=usecols,
                             skipinitialspace=True, engine="c", encoding=encoding)
        except pd.errors.EmptyDataError:
            return empty()
        except pd.errors.ParserError as exc:
            raise _parse_error(path, sep, exc) from None
        for role, p in use:
            arr = _series_to_numpy(df[p])
            if role in ("user", "item") and arr.dtype == object and any(
                    isinstance(x, int) and not -2 ** 63 <= x < 2 ** 64 for x in arr.tolist()):
                arr = arr.astype(str)  # ids beyond 64 bits in a text file: keep them as their text
            cols[key[role]] = arr
        return cols
    # NumPy path: try typed parsing, fall back to strings (cleaning parses them per entry)
    usecols = [p for _, p in use]
    import warnings
    for dtypes in ((np.int64, np.int64, np.float64, np.float64), None):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(contained no data|[Ee]mpty input).*")
                if dtypes is None:
                    arr = np.loadtxt(source(), delimiter=psep, usecols=usecols, dtype=str, ndmin=2,
                                     quotechar='"', skiprows=skip, encoding=encoding)
                    arrs = [np.char.strip(arr[:, j]) for j in range(len(use))]
                else:
                    dt = [(f"f{j}", dtypes[_ROLES.index(role)]) for j, (role, _) in enumerate(use)]
                    rec = np.loadtxt(source(), delimiter=psep, usecols=usecols, dtype=dt, ndmin=1,
                                     quotechar='"', skiprows=skip, encoding=encoding)
                    arrs = [np.asarray(rec[f"f{j}"]) for j in range(len(use))]
            break
        except ValueError as exc:
            if dtypes is None:
                raise _parse_error(path, sep, exc) from None
    if arrs and arrs[0].size == 0:
        return empty()
    for (role, _), a in zip(use, arrs):
        cols[key[role]] = a
    return cols
