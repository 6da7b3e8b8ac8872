"""``evaluate(model, split_or_evalset)``: top-k recommendation quality on held-out interactions,
and ``compare([models...], split)``: several models side by side (fit time, serving speed).

Both return small table objects: :class:`EvaluationResult` is the ``dict`` ``evaluate`` always
returned (``res["ndcg@100"]``) and prints as an aligned metrics x cut-offs table;
:class:`Comparison` prints one row per model. Each converts to a plain dict (``to_dict()``) and,
with pandas installed, to a DataFrame (``to_frame()``).
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import metrics as _metrics
from ._validation import check_bool, check_k
from .data.splits import EvalSet, Split

__all__ = ["evaluate", "compare", "EvaluationResult", "Comparison"]


# -- tables ----------------------------------------------------------------------------------------

def _cell(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _table(header, rows) -> str:
    """Aligned text table: the first column left-aligned, the others right-aligned."""
    cols = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[j]) for r in cols) for j in range(len(header))]
    lines = []
    for r in cols:
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip())
    return "\n".join(lines)


def _pandas(what: str):
    try:
        import pandas
    except ImportError:
        raise ImportError(f"{what}.to_frame() needs pandas, which is not installed: pip install pandas "
                          f"(or pip install 'aerec[pandas]'); to_dict() needs nothing") from None
    return pandas


def _html(table):
    """Jupyter's rich display: the DataFrame's HTML when pandas is installed, else None (plain text)."""
    try:
        return table.to_frame()._repr_html_()
    except ImportError:
        return None


_RECALL_TEXT = {"min_k": "recall = hits / min(k, |held-out|) (Liang et al.)",
                "n_relevant": "recall = hits / |held-out| (as RecBole, Cornac)"}


class EvaluationResult(dict):
    """What :func:`evaluate` returns: a ``dict`` ``{"recall@20": 0.31, ..., "n_users": 150}`` (so
    ``res["ndcg@100"]`` works as it always did) that prints as an aligned table, one row per
    metric and one column per cut-off.

    Attributes: ``ks`` and ``metrics`` (as evaluated), ``recall_denominator``, ``per_user``
    (values are per-user arrays; the table shows their means), ``users`` (the evaluation set's user
    ids, one per row of the per-user arrays).
    """

    def __init__(self, values=(), *, ks=(), metrics=(), recall_denominator="min_k", per_user=False,
                 users=None):
        super().__init__(values)
        self.ks, self.metrics = tuple(ks), tuple(metrics)
        self.recall_denominator, self.per_user, self.users = recall_denominator, bool(per_user), users

    def to_dict(self) -> dict:
        """A plain ``dict`` of the same entries (Python floats and ints; arrays with ``per_user``)."""
        out = {}
        for key, v in self.items():
            if isinstance(v, np.ndarray):
                out[key] = v.copy()
            elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
                out[key] = int(v)
            else:
                out[key] = float(v)
        return out

    def to_frame(self):
        """A pandas DataFrame: metrics x cut-offs (index ``metric``, columns the ints ``k``), as
        printed; with ``per_user`` one row per evaluated user (index: ``users``) and one column per
        per-user entry (``"ndcg@100"``, ...). Needs pandas."""
        pd = _pandas("EvaluationResult")
        if self.per_user:
            cols = {key: v for key, v in self.items() if isinstance(v, np.ndarray)}
            index = pd.Index(self.users, name="user") if self.users is not None else None
            return pd.DataFrame(cols, index=index)
        metrics, ks = self._grid()
        data = [[float(self[f"{m}@{k}"]) if f"{m}@{k}" in self else float("nan") for k in ks] for m in metrics]
        frame = pd.DataFrame(data, index=pd.Index(list(metrics), name="metric"), columns=list(ks))
        frame.attrs["n_users"] = self.get("n_users")
        return frame

    def _grid(self):
        metrics, ks = list(self.metrics), list(self.ks)
        for key in self:  # entries added by hand still show
            if "@" in key:
                m, _, k = key.rpartition("@")
                if m not in metrics:
                    metrics.append(m)
                if k.isdigit() and int(k) not in ks:
                    ks.append(int(k))
        return metrics, ks

    def _mean(self, v):
        if isinstance(v, np.ndarray):
            return float(np.nanmean(v)) if np.any(~np.isnan(v)) else float("nan")
        return v

    def __str__(self) -> str:
        metrics, ks = self._grid()
        rows = [[m] + [_cell(self._mean(self[f"{m}@{k}"])) if f"{m}@{k}" in self else "" for k in ks]
                for m in metrics]
        lines = [_table(["metric"] + [f"@{k}" for k in ks], rows)]
        foot = []
        if "n_users" in self:
            foot.append(f"{self['n_users']} users")
        if "recall" in metrics:
            foot.append(_RECALL_TEXT.get(self.recall_denominator, ""))
        if self.per_user:
            foot.append("per-user values: means shown")
        others = [f"{key}={_cell(self._mean(v))}" for key, v in self.items() if "@" not in key and key != "n_users"]
        if foot or others:
            lines.append("; ".join(foot + others))
        return "\n".join(lines)

    __repr__ = __str__
    _repr_html_ = _html

    def __reduce__(self):  # pickle / copy keep the attributes
        return (type(self), (dict(self),), {"ks": self.ks, "metrics": self.metrics,
                                            "recall_denominator": self.recall_denominator,
                                            "per_user": self.per_user, "users": self.users})


class Comparison:
    """What :func:`compare` returns: one row per model, read-only mapping ``name -> row dict``
    (``cmp["MultVAE"]["ndcg@100"]``, ``cmp["MultVAE"]["fit_s"]``). Prints aligned; ``to_dict()``
    and ``to_frame()`` (pandas, index ``model``) convert it. ``results[name]`` is each model's
    full :class:`EvaluationResult`; ``models[name]`` the fitted model."""

    def __init__(self, results: dict, fit_s: dict, users_per_s: dict, models: dict, columns):
        self.results, self.fit_s, self.users_per_s, self.models = results, fit_s, users_per_s, models
        self.columns = tuple(columns)

    def _row(self, name) -> dict:
        res = self.results[name]
        row = {c: float(res[c]) for c in self.columns if c in res}
        row["fit_s"] = self.fit_s[name]
        row["users_per_s"] = self.users_per_s[name]
        row["n_users"] = int(res.get("n_users", 0))
        return row

    def __getitem__(self, name) -> dict:
        if name not in self.results:
            raise KeyError(f"no model named {name!r} in this comparison; it has {list(self.results)}")
        return self._row(name)

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __contains__(self, name) -> bool:
        return name in self.results

    def keys(self):
        return self.results.keys()

    def items(self):
        return [(n, self._row(n)) for n in self.results]

    def to_dict(self) -> dict:
        """``{model name: {"ndcg@100": ..., "fit_s": ..., "users_per_s": ..., "n_users": ...}}``;
        ``fit_s`` is None for a model that came fitted."""
        return {n: self._row(n) for n in self.results}

    def to_frame(self):
        """A pandas DataFrame, one row per model (index ``model``). Needs pandas."""
        pd = _pandas("Comparison")
        rows = self.to_dict()
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")

    def __str__(self) -> str:
        header = ["model", *self.columns, "fit s", "users/s"]
        rows = []
        for name in self.results:
            r = self._row(name)
            fit = "-" if r["fit_s"] is None else f"{r['fit_s']:.2f}"
            ups = r["users_per_s"]
            rows.append([name, *(_cell(r.get(c, float("nan"))) for c in self.columns), fit,
                         "-" if ups is None else f"{ups:,.0f}"])
        lines = [_table(header, rows)]
        first = next(iter(self.results.values()), None)
        if first is not None:
            foot = [f"{first.get('n_users', 0)} users"]
            if any(c.startswith("recall@") for c in self.columns):
                foot.append(_RECALL_TEXT.get(first.recall_denominator, ""))
            foot.append("higher is better; fit s = fit wall time, users/s = recommend throughput")
            lines.append("; ".join(foot))
        return "\n".join(lines)

    __repr__ = __str__
    _repr_html_ = _html


# -- evaluate --------------------------------------------------------------------------------------

def _as_ids(ids, n_rows, k, n_items):
    ids = np.asarray(ids)
    if ids.ndim == 1 and n_rows == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[0] != n_rows:
        raise ValueError(f"model.recommend returned ids of shape {ids.shape} for a batch of "
                         f"{n_rows} users; expected ({n_rows}, <= {k})")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"model.recommend must return integer item ids, got dtype {ids.dtype}")
    if ids.shape[1] > k:
        ids = ids[:, :k]
    out = np.full((n_rows, k), -1, dtype=np.int64)
    out[:, :ids.shape[1]] = ids
    return out


def evaluate(model, split_or_evalset, ks=(20, 50, 100), *, batch_size: int = 2048,
             on: str = "test", metrics=_metrics.RANKING_METRICS, per_user: bool = False,
             recall_denominator: str = "min_k") -> EvaluationResult:
    """Top-k metrics of ``model`` on an :class:`~aerec.data.EvalSet` (or a ``Split``'s test set).

    For each batch of evaluation users this calls::

        ids, scores = model.recommend(users, user_items=fold_in_rows, k=max(ks), filter_seen=True)

    where ``users`` is the batch's row ids in ``split.train`` when ``evalset.known_users`` and None
    otherwise (strong generalisation: the model folds the users in from ``user_items``), and
    ``fold_in_rows`` is the batch's rows of ``evalset.fold_in`` (CSR, batch x n_items). ``ids``
    (batch x <= max(ks), ``-1`` padding allowed) are then scored against ``evalset.held_out``.

    Parameters
    ----------
    model : object with the ``recommend`` method above
    split_or_evalset : Split or EvalSet
    ks : int or sequence of int
        Cut-offs.
    batch_size : int
        Users per ``recommend`` call.
    on : {"test", "validation"}
        Which set of a ``Split`` to use (ignored for an EvalSet).
    metrics : sequence of str
        Among ``aerec.metrics.RANKING_METRICS``.
    per_user : bool
        Return per-user float64 arrays (NaN for users with an empty held-out row) instead of means.
    recall_denominator : {"min_k", "n_relevant"}
        ``"min_k"`` (default): recall@k = hits / min(k, |held-out|) (Liang et al. 2018), which
        reaches 1 when the top k is all relevant; ``"n_relevant"``: hits / |held-out|, the textbook
        recall that RecBole and Cornac report. They differ only for users with more than k
        held-out items.

    Returns
    -------
    EvaluationResult
        a ``dict`` ``{"recall@20": float, "ndcg@100": float, ..., "n_users": int}`` that prints as
        a table (``to_dict()``, ``to_frame()``); users whose held-out row is empty are excluded
        from the means (``n_users`` counts the others).
    """
    res, _seconds = _evaluate(model, split_or_evalset, ks, batch_size=batch_size, on=on, metrics=metrics,
                              per_user=per_user, recall_denominator=recall_denominator)
    return res


def _evaluate(model, split_or_evalset, ks, *, batch_size, on, metrics, per_user, recall_denominator):
    """evaluate(), plus the seconds spent in ``model.recommend``."""
    recall_denominator = _metrics._check_recall_denominator(recall_denominator)
    if not isinstance(on, str):
        raise ValueError(f"on must be 'test' or 'validation', got {on!r}")
    per_user = check_bool(per_user, "per_user")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not hasattr(metrics, "__iter__") or not all(isinstance(x, str) for x in metrics):
        raise TypeError(f"metrics must be a sequence of names from {_metrics.RANKING_METRICS}, got {metrics!r}")
    if isinstance(split_or_evalset, Split):
        if on not in ("test", "validation"):
            raise ValueError(f"on must be 'test' or 'validation', got {on!r}")
        ev = getattr(split_or_evalset, on)
        if ev is None:
            raise ValueError(f"this split has no {on} set")
    elif isinstance(split_or_evalset, EvalSet):
        ev = split_or_evalset
    else:
        raise TypeError(f"expected an aerec.data Split or EvalSet, got {type(split_or_evalset).__name__}")
    if not hasattr(model, "recommend"):
        raise TypeError(f"{type(model).__name__} has no recommend(users, user_items=..., k=..., "
                        f"filter_seen=...) method")
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, (bool, np.bool_)):
        ks = (int(ks),)
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise TypeError(f"ks must be a positive int or a sequence of them, got {type(ks).__name__} {ks!r}")
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    try:
        ks = tuple(check_k(k) for k in ks)
    except (TypeError, ValueError) as exc:  # one ValueError for any bad cut-off, as before
        raise ValueError(f"every k in ks must be a positive integer: {exc}") from None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    # a list never holds more than n_items ids: a huge k must not allocate n_users x k
    kmax = max(1, min(max(ks), ev.n_items))
    n = ev.n_users
    ranked = np.full((n, kmax), -1, dtype=np.int64)
    fold_in = ev.fold_in.tocsr()
    seconds = 0.0
    for start in range(0, n, int(batch_size)):
        stop = min(start + int(batch_size), n)
        users = ev.users[start:stop] if ev.known_users else None
        t0 = time.perf_counter()
        ids, _scores = model.recommend(users, user_items=fold_in[start:stop], k=kmax, filter_seen=True)
        seconds += time.perf_counter() - t0
        ranked[start:stop] = _as_ids(ids, stop - start, kmax, ev.n_items)
    values = _metrics.ranking_metrics(ranked, ev.held_out, ks, metrics, per_user=per_user,
                                      recall_denominator=recall_denominator)
    if getattr(ev, "role", None) == "test" and not per_user and isinstance(getattr(model, "card_", None), dict):
        # the model card's test metrics (aerec.models._card): the last evaluation on a split's test set
        test = {k: float(v) for k, v in values.items() if k != "n_users" and np.ndim(v) == 0}
        model.card_ = {**model.card_, "test": test}
    return EvaluationResult(values, ks=tuple(dict.fromkeys(ks)), metrics=tuple(dict.fromkeys(metrics)),
                            recall_denominator=recall_denominator, per_user=per_user,
                            users=ev.users.copy()), seconds


# -- compare ---------------------------------------------------------------------------------------

def _is_fitted(model) -> bool:
    """aerec recommenders hold their training matrix in ``train_`` once fitted; an object without a
    ``fit`` method can only be used as it is."""
    if not callable(getattr(model, "fit", None)):
        return True
    return getattr(model, "train_", None) is not None


def _takes_evalset_validation(model) -> bool:
    import inspect
    from .models import AutoRec
    if isinstance(model, AutoRec):  # its validation is a rating matrix, not held-out users
        return False
    try:
        params = inspect.signature(model.fit).parameters
    except (TypeError, ValueError):
        return False
    return "validation" in params


def _names(models) -> tuple[list, list]:
    if isinstance(models, dict):
        names, objs = list(models), list(models.values())
        if not all(isinstance(n, str) for n in names):
            raise TypeError("models given as a dict must map names (str) to models")
    else:
        if isinstance(models, (str, bytes)) or not hasattr(models, "__iter__"):
            raise TypeError(f"models must be a list of models (or a dict name -> model), got "
                            f"{type(models).__name__}; for one model pass [model]")
        objs = list(models)
        names, seen = [], {}
        for m in objs:
            base = type(m).__name__
            seen[base] = seen.get(base, 0) + 1
            names.append(base if seen[base] == 1 else f"{base} ({seen[base]})")
    if not objs:
        raise ValueError("models is empty; pass at least one model")
    for name, m in zip(names, objs):
        if not hasattr(m, "recommend"):
            raise TypeError(f"{name}: {type(m).__name__} has no recommend(users, user_items=..., k=..., "
                            f"filter_seen=...) method")
    return names, objs


def compare(models, split, ks=(20, 50, 100), *, metrics=("recall", "ndcg"), fit="auto", fit_kwargs=None,
            on: str = "test", batch_size: int = 2048, recall_denominator: str = "min_k",
            verbose: bool = True) -> Comparison:
    """Fit (where needed) and evaluate several models on one split; one row per model (Cornac's
    ``Experiment`` habit).

    Parameters
    ----------
    models : list of models, or dict ``{name: model}``
        aerec recommenders or any object with ``recommend`` (see :func:`evaluate`). Rows are named
        after the class (``"MultVAE"``, ``"MultVAE (2)"`` for a second one) or by the dict's keys.
    split : aerec.data Split
        ``split.train`` is what unfitted models are fitted on; models whose ``fit`` takes
        ``validation`` get ``split.validation`` (when the split has one; AutoRec, whose validation
        is a rating matrix, does not).
    ks : int or sequence of int
        cut-offs.
    metrics : sequence of str
        among ``aerec.metrics.RANKING_METRICS``; each is shown at every k.
    fit : {"auto", True, False}
        "auto" fits the models that are not fitted yet (no ``train_``) and uses the others as they
        are; True refits every model; False fits none (their fit time shows as "-").
    fit_kwargs : dict, optional
        more keyword arguments for every ``fit`` call, e.g. ``{"verbose": 1}`` for progress bars.
    on, batch_size, recall_denominator
        as in :func:`evaluate`.
    verbose : bool
        print the table when done.

    Returns
    -------
    Comparison
        prints aligned; ``cmp[name]`` is a row dict with the metrics, ``fit_s`` (seconds, None if
        not fitted here), ``users_per_s`` (evaluation users over the seconds spent in
        ``recommend``) and ``n_users``; ``to_dict()``, ``to_frame()``.
    """
    names, objs = _names(models)
    if not isinstance(split, Split):
        raise TypeError(f"split must be an aerec.data Split (train + test users), got {type(split).__name__}; "
                        "make one with aerec.data.strong_generalization_split(...) or random_split(...)")
    if isinstance(fit, (bool, np.bool_)):
        fit = bool(fit)
    elif not (isinstance(fit, str) and fit == "auto"):
        raise ValueError(f"fit must be 'auto', True or False, got {fit!r}")
    verbose = check_bool(verbose, "verbose")
    if fit_kwargs is None:
        fit_kwargs = {}
    if not isinstance(fit_kwargs, dict) or not all(isinstance(k, str) for k in fit_kwargs):
        raise TypeError(f"fit_kwargs must be a dict of keyword arguments for fit, got {type(fit_kwargs).__name__}")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not hasattr(metrics, "__iter__") or not all(isinstance(x, str) for x in metrics):
        raise TypeError(f"metrics must be a sequence of names from {_metrics.RANKING_METRICS}, got {metrics!r}")
    unknown = set(metrics) - set(_metrics.RANKING_METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {_metrics.RANKING_METRICS}")
    results, fit_s, ups, fitted = {}, {}, {}, {}
    columns = None
    for name, model in zip(names, objs):
        seconds = None
        if fit is True or (fit == "auto" and not _is_fitted(model)):
            if not callable(getattr(model, "fit", None)):
                raise TypeError(f"{name}: {type(model).__name__} has no fit method; pass it fitted with fit='auto'")
            kw = dict(fit_kwargs)
            if "validation" not in kw and split.validation is not None and _takes_evalset_validation(model):
                kw["validation"] = split.validation
            t0 = time.perf_counter()
            model.fit(split.train, **kw)
            seconds = time.perf_counter() - t0
        res, rec_s = _evaluate(model, split, ks, batch_size=batch_size, on=on, metrics=metrics,
                               per_user=False, recall_denominator=recall_denominator)
        if columns is None:
            columns = [f"{m}@{k}" for m in res.metrics for k in res.ks]
        results[name], fit_s[name], fitted[name] = res, seconds, model
        n = getattr(getattr(split, on), "n_users", 0)
        ups[name] = (n / rec_s) if rec_s > 0 else None
    table = Comparison(results, fit_s, ups, fitted, columns)
    if verbose:
        print(table, flush=True)
    return table
