"""pandas interop, imported lazily: pandas is optional."""
from __future__ import annotations

import numpy as np

USER_NAMES = ("user", "user_id", "userId", "userid", "uid")
ITEM_NAMES = ("item", "item_id", "itemId", "itemid", "movieId", "movie_id", "iid")
VALUE_NAMES = ("rating", "value", "score", "weight")
TIME_NAMES = ("timestamp", "ts", "time", "datetime")


def require_pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("this needs pandas, which is not installed: pip install pandas "
                          "(or aerec[pandas]); or pass NumPy arrays to Interactions.from_arrays") from exc
    return pd


def pick_column(names, given, candidates, what, required, hint=None):
    """The column for role ``what``; ``hint`` is how the caller names it (default ``<what>_col=``)."""
    if given is False:
        return None
    if given is not None:
        if given not in names:
            raise KeyError(f"{what} column {given!r} not found; columns are {list(names)}")
        return given
    for c in candidates:
        if c in names:
            return c
    if required:
        fix = hint if hint is not None else f"pass {what}_col=..."
        raise KeyError(f"no {what} column found (looked for {list(candidates)}); columns are "
                       f"{list(names)}; {fix}")
    return None


def _series_to_numpy(s):
    pd = require_pandas()
    if isinstance(s.dtype, pd.api.extensions.ExtensionDtype) and not isinstance(
            s.dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_numeric_dtype(s.dtype):
            if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
                return s.to_numpy(dtype=np.int64)
            return s.to_numpy(dtype=np.float64, na_value=np.nan)
        return s.to_numpy(dtype=object, na_value=None)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return s.to_numpy()


def dataframe_columns(df, user_col=None, item_col=None, value_col=None, timestamp_col=None) -> dict:
    pd = require_pandas()
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    names = list(df.columns)
    uc = pick_column(names, user_col, USER_NAMES, "user", True)
    ic = pick_column(names, item_col, ITEM_NAMES, "item", True)
    vc = pick_column(names, value_col, VALUE_NAMES, "value", False)
    tc = pick_column(names, timestamp_col, TIME_NAMES, "timestamp", False)
    for c in (uc, ic, vc, tc):
        if c is not None and names.count(c) > 1:
            raise ValueError(f"column {c!r} appears {names.count(c)} times in the DataFrame; rename the duplicates "
                             "or pass user_col=/item_col=/value_col=/timestamp_col= naming unique columns")
    return {"users": _series_to_numpy(df[uc]), "items": _series_to_numpy(df[ic]),
            "values": None if vc is None else _series_to_numpy(df[vc]),
            "timestamps": None if tc is None else _series_to_numpy(df[tc])}
