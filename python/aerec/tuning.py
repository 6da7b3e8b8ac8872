"""``tune(Model, space, split)``: hyper-parameter search with per-trial early stopping.

Every trial fits ``Model(**base, **params)`` on ``split.train`` with ``validation=split.validation``
(so the model keeps its best epoch and stops early after ``early_stopping`` epochs without a better
validation NDCG) and scores it on ``split.validation``; the test set is never touched, so
``aerec.evaluate(result.best_model_, split)`` afterwards is an honest estimate.

Two kinds of search:

- **grid** (``n_trials=None``): every combination of the lists in ``space``, in order
  (the last name varies fastest, as scikit-learn's ``ParameterGrid`` on an ordered dict).
- **random** (``n_trials=n``): ``n`` draws; a list is sampled uniformly, a scipy.stats
  distribution with ``rvs(random_state=rng)``, a callable as ``f(rng)``. When every entry is a list,
  the draws are distinct grid points (``n`` at most the grid's size).

The draws come from ``numpy.random.default_rng(seed)``: the same ``seed`` gives the same trials.
The models' own ``random_state`` stays as given (constructor default 0), so trials differ only in
the searched values.

scikit-learn's tuners work too: recommenders follow its estimator contract (``get_params``,
``set_params``, ``clone``) and ``score(X)`` returns NDCG@100 on held-out items of the users in
``X`` (see ``Recommender.score``), so ``GridSearchCV(aerec.MultDAE(), grid, cv=3).fit(X)`` runs
without a ``scoring=``. ``tune`` is the faster path for these models: it validates every epoch
and stops early, where ``GridSearchCV`` trains each candidate for all its epochs on each fold.
"""
from __future__ import annotations

import inspect
import itertools
import math
import time
import warnings

import numpy as np

from ._validation import check_bool, check_nonneg_int, check_positive_int
from .evaluation import _cell, _html, _pandas, _table, evaluate

__all__ = ["tune", "TuningResult"]


class TuningResult:
    """What :func:`tune` returns.

    Attributes
    ----------
    best_params_ : dict
        the searched values of the best trial (the other constructor arguments are ``base_params``).
    best_score_ : float
        its validation ``metric``.
    best_model_ : model
        the best trial's fitted model (fitted on ``split.train``, its best epoch kept), ready for
        ``aerec.evaluate(best_model_, split)``; None with ``keep_best=False``.
    best_index_ : int
        the best trial's position in ``trials``.
    trials : list of dict
        one per trial, in run order: ``{"params": {...}, "score": float, "fit_s": float,
        "best_epoch": int or None, "epochs_run": int or None}``.
    metric : str
    base_params : dict
        the constructor arguments every trial shared.

    Prints as an aligned table (one row per trial, ``*`` on the best); ``to_dict()`` gives plain
    Python data, ``to_frame()`` (pandas) one row per trial.
    """

    def __init__(self, model_class, metric, trials, best_index, best_model, base_params, search):
        self.model_class, self.metric, self.trials = model_class, metric, trials
        self.best_index_, self.best_model_, self.base_params = best_index, best_model, base_params
        self.search = search
        best = trials[best_index]
        self.best_params_ = dict(best["params"])
        self.best_score_ = float(best["score"])

    def _param_names(self):
        names = []
        for t in self.trials:
            for n in t["params"]:
                if n not in names:
                    names.append(n)
        return names

    def to_dict(self) -> dict:
        """``{"model": name, "metric": ..., "search": "grid" | "random", "best_params": {...},
        "best_score": float, "base_params": {...}, "trials": [{"params": ..., "score": ..., ...}]}``."""
        return {"model": self.model_class.__name__, "metric": self.metric, "search": self.search,
                "best_params": dict(self.best_params_), "best_score": self.best_score_,
                "base_params": dict(self.base_params),
                "trials": [{**t, "params": dict(t["params"])} for t in self.trials]}

    def to_frame(self):
        """A pandas DataFrame, one row per trial (index ``trial``): the searched parameters, the
        score (column named after the metric), ``fit_s``, ``best_epoch``, ``epochs_run``. Needs
        pandas."""
        pd = _pandas("TuningResult")
        names = self._param_names()
        rows = [{**{n: t["params"].get(n) for n in names}, self.metric: t["score"], "fit_s": t["fit_s"],
                 "best_epoch": t["best_epoch"], "epochs_run": t["epochs_run"]} for t in self.trials]
        return pd.DataFrame(rows, index=pd.RangeIndex(len(rows), name="trial"))

    def __str__(self) -> str:
        names = self._param_names()
        header = ["trial", *names, self.metric, "fit s", "epoch"]
        rows = []
        for i, t in enumerate(self.trials):
            mark = "*" if i == self.best_index_ else " "
            epoch = "-" if t["best_epoch"] is None else f"{t['best_epoch']}/{t['epochs_run']}"
            rows.append([f"{i}{mark}", *(_param_cell(t["params"].get(n)) for n in names), _cell(t["score"]),
                         f"{t['fit_s']:.2f}", epoch])
        foot = (f"{self.model_class.__name__}, {self.search} search, {len(self.trials)} trials; best (*) "
                f"{self.metric}={self.best_score_:.4f} on validation with {self.best_params_}; "
                "epoch = the kept epoch (best_epoch_, from 0) / epochs run")
        return _table(header, rows) + "\n" + foot

    __repr__ = __str__
    _repr_html_ = _html


def _param_cell(v) -> str:
    if isinstance(v, float) and not math.isnan(v) and v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.3g}"
    return _cell(v)


def _parse_metric(metric):
    from .metrics import RANKING_METRICS
    if not isinstance(metric, str) or "@" not in metric:
        raise ValueError(f"metric must be '<name>@<k>' with name in {list(RANKING_METRICS)}, e.g. 'ndcg@100'; "
                         f"got {metric!r}")
    name, _, k = metric.rpartition("@")
    if name not in RANKING_METRICS:
        raise ValueError(f"unknown metric {name!r} in {metric!r}; choose from {list(RANKING_METRICS)}")
    if not k.isdigit() or int(k) < 1:
        raise ValueError(f"the cut-off in {metric!r} must be a positive integer, e.g. 'ndcg@100'")
    return name, int(k)


def _is_distribution(v) -> bool:
    return callable(getattr(v, "rvs", None))


def _check_space(space, valid, cls_name):
    if not isinstance(space, dict):
        raise TypeError(f"the search space must be a dict {{parameter name: list of values | scipy.stats "
                        f"distribution | callable(rng)}}, got {type(space).__name__}")
    if not space:
        raise ValueError("the search space is empty; name at least one parameter to search")
    out = {}
    for name, values in space.items():
        if not isinstance(name, str):
            raise TypeError(f"search space keys must be parameter names (str), got {name!r}")
        if name not in valid:
            raise ValueError(f"{cls_name} has no parameter {name!r}; valid names: {sorted(valid)}")
        if _is_distribution(values) or (callable(values) and not isinstance(values, type)):
            out[name] = values
            continue
        if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
            raise TypeError(f"space[{name!r}] must be a list of values, a scipy.stats distribution or a "
                            f"callable(rng), got {type(values).__name__} {values!r}; for one value write [value]")
        values = list(values)
        if not values:
            raise ValueError(f"space[{name!r}] is an empty list; give at least one value")
        out[name] = values
    return out


def _draw(spec, rng):
    if isinstance(spec, list):
        v = spec[int(rng.integers(len(spec)))]
    elif _is_distribution(spec):
        v = spec.rvs(random_state=rng)
    else:
        v = spec(rng)
    if isinstance(v, np.generic):  # plain Python numbers in params, tables and model files
        v = v.item()
    elif isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    return v


def _candidates(space, n_trials, rng):
    names = list(space)
    if all(isinstance(v, list) for v in space.values()):
        grid = [dict(zip(names, combo)) for combo in itertools.product(*space.values())]
        if n_trials is None:
            return grid, "grid"
        if n_trials > len(grid):
            warnings.warn(f"n_trials={n_trials} is more than the {len(grid)} points of the grid; running each "
                          "point once", UserWarning, stacklevel=3)
            n_trials = len(grid)
        pick = rng.choice(len(grid), size=n_trials, replace=False)
        return [grid[i] for i in pick], "random"
    if n_trials is None:
        odd = [n for n, v in space.items() if not isinstance(v, list)]
        raise ValueError(f"space has distributions or callables ({odd}), so it has no grid; pass n_trials=<number of "
                         "random draws>")
    return [{n: _draw(space[n], rng) for n in names} for _ in range(n_trials)], "random"


def _fit_keywords(model):
    try:
        return set(inspect.signature(model.fit).parameters)
    except (TypeError, ValueError):
        return set()


def tune(model, space, split, metric: str = "ndcg@100", *, n_trials=None, seed=0, early_stopping=10,
         keep_best: bool = True, fit_kwargs=None, verbose: bool = True) -> TuningResult:
    """Search hyper-parameters on a split's validation users.

    Parameters
    ----------
    model : aerec model class or instance
        ``aerec.MultDAE`` (trials start from the constructor defaults) or ``aerec.MultDAE(epochs=200)``
        (from that instance's parameters; it is not modified).
    space : dict
        ``{parameter name: values}``: a list (grid axis, or sampled uniformly), a scipy.stats
        distribution (``scipy.stats.loguniform(1e-4, 1e-2)``: needs ``n_trials``) or a callable
        ``f(rng) -> value`` taking a ``numpy.random.Generator``. Names are the model's constructor
        parameters.
    split : aerec.data Split with a validation set
        trials fit on ``split.train`` and are scored on ``split.validation``
        (``strong_generalization_split(data, n_validation_users=..., ...)``).
    metric : str, default "ndcg@100"
        ``"<name>@<k>"``, name in ``aerec.metrics.RANKING_METRICS``; higher is better. The models'
        epoch selection follows validation NDCG@k at the same k.
    n_trials : int >= 1, optional
        None: the full grid (every entry must be a list). An int: that many random draws.
    seed : int >= 0, default 0
        seeds the random draws.
    early_stopping : int >= 1 or None, default 10
        per trial: stop after this many epochs without a better validation NDCG (models whose
        ``fit`` takes ``early_stopping``); None trains every epoch.
    keep_best : bool, default True
        keep the best trial's fitted model as ``best_model_`` (False keeps none: less memory).
    fit_kwargs : dict, optional
        more keyword arguments for every ``fit``.
    verbose : bool, default True
        print one line per trial and the table at the end.

    Returns
    -------
    TuningResult
        ``best_params_``, ``best_score_``, ``best_model_``, ``trials``; prints as a table,
        ``to_dict()``, ``to_frame()``.

    Examples
    --------
    >>> res = aerec.tune(aerec.MultDAE, {"dropout": [0.3, 0.5], "l2": [0.0, "auto"]}, split)  # doctest: +SKIP
    >>> aerec.evaluate(res.best_model_, split)                                                # doctest: +SKIP
    """
    from .data.splits import Split
    from .evaluation import _takes_evalset_validation
    if isinstance(model, type):
        cls, base = model, {}
        if not hasattr(cls, "get_params") or not hasattr(cls, "fit"):
            raise TypeError(f"{cls.__name__} is not an aerec model class (no fit / get_params)")
    else:
        if not hasattr(model, "get_params") or not callable(getattr(model, "fit", None)):
            raise TypeError(f"model must be an aerec model class (aerec.MultDAE) or instance, got "
                            f"{type(model).__name__}")
        cls, base = type(model), dict(model.get_params())
    valid = set(cls._param_names()) if hasattr(cls, "_param_names") else set(inspect.signature(cls).parameters)
    space = _check_space(space, valid, cls.__name__)
    if not isinstance(split, Split):
        raise TypeError(f"split must be an aerec.data Split, got {type(split).__name__}; make one with "
                        "aerec.data.strong_generalization_split(data, n_validation_users=..., n_test_users=...)")
    if split.validation is None:
        raise ValueError("split has no validation set, and tune scores trials on validation users (never on "
                         "test); make the split with n_validation_users > 0 (or validation_fraction > 0)")
    name, k = _parse_metric(metric)
    if n_trials is not None:
        n_trials = check_positive_int(n_trials, "n_trials", hi=None)
    seed = check_nonneg_int(seed, "seed")
    if early_stopping is not None:
        early_stopping = check_positive_int(early_stopping, "early_stopping", hi=None)
    keep_best = check_bool(keep_best, "keep_best")
    verbose = check_bool(verbose, "verbose")
    if fit_kwargs is None:
        fit_kwargs = {}
    if not isinstance(fit_kwargs, dict) or not all(isinstance(key, str) for key in fit_kwargs):
        raise TypeError(f"fit_kwargs must be a dict of keyword arguments for fit, got {type(fit_kwargs).__name__}")
    rng = np.random.default_rng(seed)
    candidates, search = _candidates(space, n_trials, rng)
    trials, best_index, best_model = [], None, None
    if verbose:
        print(f"tune {cls.__name__}: {search} search, {len(candidates)} trials, {metric} on "
              f"{split.validation.n_users} validation users", flush=True)
    for i, params in enumerate(candidates):
        est = cls(**{**base, **params})
        accepted = _fit_keywords(est)
        kw = dict(fit_kwargs)
        if "validation" not in kw and _takes_evalset_validation(est):
            kw["validation"] = split.validation
        if early_stopping is not None and "early_stopping" in accepted and "early_stopping" not in kw:
            kw["early_stopping"] = early_stopping
        if "verbose" in accepted and "verbose" not in kw:
            kw["verbose"] = 0
        if "k" in accepted and "k" not in kw:
            kw["k"] = k
        t0 = time.perf_counter()
        est.fit(split.train, **kw)
        fit_s = time.perf_counter() - t0
        score = float(evaluate(est, split.validation, ks=(k,), metrics=(name,))[f"{name}@{k}"])
        hist = getattr(est, "history_", None) or {}
        runs = hist.get("loss")
        best_epoch = getattr(est, "best_epoch_", None)
        trials.append({"params": dict(params), "score": score, "fit_s": fit_s,
                       "best_epoch": None if best_epoch is None else int(best_epoch),
                       "epochs_run": None if runs is None else len(runs)})
        better = best_index is None or (not math.isnan(score) and
                                        (math.isnan(trials[best_index]["score"]) or
                                         score > trials[best_index]["score"]))
        if better:
            best_index = i
            best_model = est if keep_best else None
        if verbose:
            print(f"  trial {i}: {params} {metric}={score:.4f} ({fit_s:.1f} s)", flush=True)
    result = TuningResult(cls, metric, trials, best_index, best_model, base, search)
    if verbose:
        print(result, flush=True)
    return result
