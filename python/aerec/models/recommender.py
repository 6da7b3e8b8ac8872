"""The recommender contract shared by every model: fit on a users x items matrix, recommend top-k
with seen items excluded (for training users or, by fold-in, for users never seen), similar items,
save/load.

Ids are row/column indices of the training matrix (the ``implicit`` convention). ``aerec.data``'s
``Interactions`` maps raw ids to these indices and back (``model.recommend_raw`` does both ways).
"""
from __future__ import annotations

import collections.abc
import numbers

import numpy as np
import scipy.sparse as sp

from .. import _validation
from .._validation import UnknownIdError, as_csr
from ._serving import reads
from .base import Estimator

__all__ = ["Recommender"]


def _as_ids(x, name, unordered=False):
    """Integer ids as int64 (scalar or 1-D). Ids that cannot index the model (beyond 64 bits) are
    unknown ids, not overflow errors; an empty list is an empty batch. Iterators (generators, dict
    views) are read once; sets only where order does not matter (``unordered``: candidate and
    filter lists)."""
    if x is None:
        raise TypeError(f"{name} is None; pass an int or a 1-D array of ints")
    if isinstance(x, (set, frozenset)):
        if not unordered:
            raise TypeError(f"{name} is a {type(x).__name__}, which has no order (results come back one row "
                            f"per id, in the order given); pass a list, e.g. sorted({name})")
        x = list(x)
    elif isinstance(x, (collections.abc.Iterator, collections.abc.KeysView, collections.abc.ValuesView)):
        x = list(x)  # np.asarray would make a 0-d object array of a generator
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be integer ids, got a bool")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be read as integer ids ({exc})") from None
    if arr.dtype == object:
        vals = arr.ravel().tolist()
        if vals and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in vals):
            big = next((v for v in vals if not -2 ** 63 <= v < 2 ** 63), None)
            if big is not None:
                raise UnknownIdError(f"{name} contains {big}, which is not a valid id (ids are row/column "
                                     "indices of the training matrix)")
            arr = np.asarray(vals, dtype=np.int64).reshape(arr.shape)  # ints stored as objects
    if arr.size == 0 and arr.ndim == 1 and arr.dtype.kind in "fO":
        arr = arr.astype(np.int64)  # [] is an empty batch
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "b":
            raise TypeError(f"{name} must be integer ids, got booleans; for a mask pass np.flatnonzero(mask)")
        if arr.dtype.kind == "f" and arr.size and np.isnan(arr).any():
            raise TypeError(f"{name} contains NaN (a missing id, e.g. pandas NA); drop the missing entries "
                            "and pass integer ids")
        if arr.dtype.kind == "f" and arr.size and np.all(arr == np.round(arr)):
            raise TypeError(f"{name} must be integers (got floats); pass np.asarray({name}, dtype=np.int64)")
        raise TypeError(f"{name} must be integer ids, got dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > 2 ** 63 - 1:
        raise UnknownIdError(f"{name} contains {int(arr.max())}, which is not a valid id (ids are row/column "
                             "indices of the training matrix)")
    return arr.astype(np.int64, copy=False)


def _looks_like_ids(x) -> bool:
    """Whether ``score``'s first argument is user ids (the aerec <= 0.1 call ``score(user_ids)``):
    an integer, or a 1-D sequence / array (a users x items matrix is 2-D)."""
    if x is None or sp.issparse(x) or hasattr(x, "to_csr") or hasattr(x, "held_out") or hasattr(x, "test"):
        return False
    if isinstance(x, (numbers.Integral, np.integer)):
        return True
    try:
        return np.ndim(x) == 1
    except Exception:  # ragged input: let score_items say what is wrong
        return True


def _raw_to_index(id_map, raw, message):
    """Indices (int64, 1-D) of the raw ids ``raw`` in ``id_map``; an id it lacks raises
    UnknownIdError with ``message(what the map said)``."""
    try:
        return np.asarray(id_map.to_index(raw), dtype=np.int64).reshape(-1)
    except UnknownIdError:
        raise
    except KeyError as exc:
        raise UnknownIdError(message(exc.args[0] if exc.args else exc)) from None


class Recommender(Estimator):
    """Base class. Subclasses implement ``_fit(X, validation, **kw)`` and ``_scores(rows, X)``
    (dense scores of the given history rows; ``rows`` are training user ids or -1 for fold-in
    users) and may override ``_topk`` with a fused search."""

    #: whether this model can fold in users never seen in training from their history
    supports_fold_in = True

    # -- the training matrix in model files ------------------------------------------------------
    @property
    def has_history(self) -> bool:
        """Whether this model holds its training interactions (False for a model loaded from a
        file saved with ``include_history=False``: it serves users from the histories passed in)."""
        return getattr(self, "train_", None) is not None and getattr(self, "has_history_", True)

    def _train_arrays(self, include_history=True) -> dict:
        X = self.train_
        include_history = _validation.check_bool(include_history, "include_history")
        if not include_history or not self.has_history:
            # a serving artefact: the shape and the item ids only, no interaction and no user id
            out = {"train_shape": np.asarray(X.shape, np.int64)}
            item_ids = self._id_arrays().get("item_ids")
            if item_ids is not None:
                out["item_ids"] = item_ids
            return out
        return {"train_indptr": X.indptr.astype(np.int64, copy=False),
                "train_indices": X.indices.astype(np.int32, copy=False),
                "train_data": X.data.astype(np.float32, copy=False),
                "train_shape": np.asarray(X.shape, np.int64),
                **self._id_arrays()}

    def _id_arrays(self) -> dict:
        """Raw ids of a model fitted on aerec.data.Interactions (kept so recommend_raw survives a
        save and load)."""
        maps = getattr(self, "id_maps_", None) or (None, None)
        return {key: np.asarray(m.raw_ids) for key, m in zip(("user_ids", "item_ids"), maps)
                if m is not None and hasattr(m, "raw_ids")}

    def _save(self, path, meta: dict, arrays: dict) -> None:
        # the header declares the training matrix's sizes, so a reader checks every array's size
        # against them before reading it (aerec.io)
        n_users, n_items = self.train_.shape
        dims = {"n_users": int(n_users), "n_items": int(n_items), "nnz": int(self.train_.nnz)}
        super()._save(path, {**meta, "dims": dims}, arrays)

    def _restore_train(self, arrays) -> None:
        shape = tuple(int(s) for s in arrays["train_shape"])
        self.has_history_ = "train_indptr" in arrays
        if self.has_history_:
            self.train_ = sp.csr_matrix((arrays["train_data"], arrays["train_indices"], arrays["train_indptr"]),
                                        shape=shape)
        else:  # saved with include_history=False: the shape only (no user has a stored history)
            self.train_ = sp.csr_matrix(shape, dtype=np.float32)
        from ..data.idmap import IdMap
        maps = tuple(IdMap(arrays[k]) if k in arrays else None for k in ("user_ids", "item_ids"))
        self.id_maps_ = maps if any(m is not None for m in maps) else None

    # -- inputs ---------------------------------------------------------------------------------
    def _train_matrix(self, train):
        self.id_maps_ = None
        if hasattr(train, "to_csr") and not sp.issparse(train):
            self.id_maps_ = (getattr(train, "user_map", None) or getattr(train, "users", None),
                             getattr(train, "item_map", None) or getattr(train, "items", None))
        self.has_history_ = True
        if hasattr(train, "columns") and hasattr(train, "iloc"):
            raise TypeError("train is a pandas DataFrame; build the users x items matrix first: "
                            "aerec.data.from_dataframe(df, 'user', 'item') for (user, item[, rating]) rows "
                            "(raw ids kept for recommend_raw), or df.to_numpy() for a users x items table")
        X = as_csr(train, "train")
        if X.shape[0] == 0 or X.shape[1] == 0 or X.nnz == 0:
            raise ValueError(f"train has shape {X.shape} and {X.nnz} interactions; need at least one")
        from ._card import fingerprint, now, split_info_of
        self.card_ = {"created": now(), "data": fingerprint(X)}
        info = split_info_of(train)
        if info is not None:
            self.card_["split"] = info
        return X

    def _histories(self, user_ids, user_items):
        """Resolve (rows, X): rows = training user index or -1; X = history CSR per query."""
        n_users, n_items = self.train_.shape
        scalar = False
        if user_ids is not None:
            ids = _as_ids(user_ids, "user_ids")
            scalar = ids.ndim == 0
            ids = ids.reshape(-1)
        if user_items is not None:
            X = as_csr(user_items, "user_items", n_cols=n_items)
            if user_ids is None:
                if not self.supports_fold_in:
                    raise ValueError(f"{type(self).__name__} cannot fold in new users; pass user_ids of training users")
                return np.full(X.shape[0], -1, np.int64), X, False
            if X.shape[0] == n_users and len(ids) == n_users and not np.array_equal(ids, np.arange(n_users)):
                # ambiguous: one row per id, or the training-shaped matrix in another order? Passing
                # the training matrix itself means the latter (reading row i as user ids[i]'s history
                # would give each user another user's seen items)
                T = self.train_
                if X.nnz == T.nnz and np.array_equal(X.indptr, T.indptr) and np.array_equal(X.indices, T.indices):
                    X = X[ids]
            elif X.shape[0] == n_users and len(ids) != n_users:
                # implicit-style: user_items is the full training-shaped matrix, so its rows are
                # training users and an id outside them has no history in it
                bad = (ids < 0) | (ids >= n_users)
                if bad.any():
                    raise UnknownIdError(f"user {int(ids[bad][0])} is unknown (the model has users "
                                         f"0..{n_users - 1}) and user_items has one row per training user, "
                                         "so it holds no history for them; to fold new users in, pass one "
                                         "history row per user id")
                X = X[ids]
            if X.shape[0] != len(ids):
                raise ValueError(f"user_items has {X.shape[0]} rows for {len(ids)} user_ids; pass one history "
                                 "row per user (or the full training-shaped matrix)")
            rows = np.where((ids >= 0) & (ids < n_users), ids, -1)
            if (rows < 0).any() and not self.supports_fold_in:
                bad = ids[rows < 0][0]
                raise UnknownIdError(f"user {int(bad)} was not in training and {type(self).__name__} cannot fold in")
            return rows, X, scalar
        if user_ids is None:
            raise ValueError("pass user_ids (training users) or user_items (histories to fold in)")
        if not self.has_history:
            raise ValueError(f"this {type(self).__name__} was saved without its training interactions "
                             "(save(..., include_history=False)), so it has no stored history for user ids; "
                             "pass each user's history instead: recommend(user_items=<their items, one "
                             "row per user>) folds them in (recommend_raw(items=[raw item ids]) for one user)")
        bad = (ids < 0) | (ids >= n_users)
        if bad.any():
            raise UnknownIdError(f"user {int(ids[bad][0])} is unknown (the model has users 0..{n_users - 1}); "
                                 "pass user_items=<their history> to fold them in")
        return ids, self.train_[ids], scalar

    # -- public API (inference: safe from any number of threads, see _serving) -----------------
    @reads
    def recommend(self, user_ids=None, user_items=None, k=10, filter_seen=True, items=None,
                  filter_items=None, batch_size=4096):
        """Top-k items for users.

        Parameters
        ----------
        user_ids : int or array of int, optional
            training-matrix row ids. A scalar gives 1-D results, an array 2-D.
        user_items : sparse (n, n_items), optional
            histories: for ``user_ids`` (one row each, or the full training-shaped matrix) or, with
            ``user_ids=None``, users never seen in training (fold-in).
        k : int > 0
            k > the number of candidates returns them all (rows padded with id -1, score -inf).
        filter_seen : bool
            exclude the items in each user's history.
        items : array of int, optional
            rank only these item ids.
        filter_items : array of int, optional
            never return these item ids.

        Returns
        -------
        ids : int32 (k,) or (n, k);  scores : float32, same shape, descending, ties by lower id.
        """
        self._check_fitted("train_")
        k = _validation.check_k(k)  # any size: the kernels get min(k, n_items)
        filter_seen = _validation.check_bool(filter_seen, "filter_seen")
        batch_size = _validation.check_positive_int(batch_size, "batch_size", hi=None)
        rows, X, scalar = self._histories(user_ids, user_items)
        n_items = self.train_.shape[1]
        cand = None
        if items is not None:
            cand = _as_ids(items, "items", unordered=True).reshape(-1)
            self._check_item_range(cand, "items")
        exclude = X if filter_seen else None
        fi = None
        if filter_items is not None:
            fi = np.unique(_as_ids(filter_items, "filter_items", unordered=True).reshape(-1))
            self._check_item_range(fi, "filter_items")
        k_out = min(k, n_items)
        ids = np.empty((X.shape[0], k_out), np.int32)
        scores = np.empty((X.shape[0], k_out), np.float32)
        for s in range(0, X.shape[0], batch_size):
            e = min(s + batch_size, X.shape[0])
            ex = exclude[s:e] if exclude is not None else None
            if fi is not None and fi.size:
                # per batch: a users x len(filter_items) exclusion matrix for every user at once
                # could need gigabytes
                extra = sp.csr_matrix((np.ones(len(fi) * (e - s), np.float32),
                                       (np.repeat(np.arange(e - s), len(fi)), np.tile(fi, e - s))),
                                      shape=(e - s, n_items))
                ex = extra if ex is None else ((ex + extra) > 0).astype(np.float32).tocsr()
            ids[s:e], scores[s:e] = self._topk(rows[s:e], X[s:e], k_out, ex, cand)
        if scalar:
            return ids[0], scores[0]
        return ids, scores

    def _check_item_range(self, ids, name):
        n_items = self.train_.shape[1]
        bad = (ids < 0) | (ids >= n_items)
        if bad.any():
            raise UnknownIdError(f"{name} contains item {int(ids[bad][0])}, outside 0..{n_items - 1}")

    def _topk(self, rows, X, k, exclude, candidates):
        return self._backend().select_topk(self._scores(rows, X), k, exclude, candidates)

    @reads
    def score_items(self, user_ids=None, user_items=None):
        """Dense scores of every item for users: float32 ``(n, n_items)``, or ``(n_items,)`` for a
        scalar user id; the values ``recommend`` ranks (seen items not excluded).

        Parameters
        ----------
        user_ids : int or array of int, optional
            training users by row id (as in :meth:`recommend`).
        user_items : sparse (n, n_items), optional
            histories, one row per user; with ``user_ids=None``, users never seen in training
            (fold-in).

        Notes
        -----
        This was ``score(user_ids, user_items)`` in aerec <= 0.1. ``score`` now follows
        scikit-learn (one number, higher is better; see :meth:`score`), and still answers the old
        calls (a user id or a 1-D list of them, or ``user_items=``) with a ``FutureWarning``.
        """
        self._check_fitted("train_")
        rows, X, scalar = self._histories(user_ids, user_items)
        s = self._scores(rows, X)
        return s[0] if scalar else s

    def score(self, X=None, y=None, *, k=100, metric="ndcg", held_out_fraction=0.2, random_state=0,
              user_ids=None, user_items=None):
        """How well the model ranks held-out items of users: one float, higher is better
        (scikit-learn's ``score`` contract, so ``GridSearchCV`` and ``cross_val_score`` work with
        no ``scoring=``).

        Parameters
        ----------
        X : users x items matrix, or aerec.data EvalSet or Split
            the users to evaluate (scipy.sparse, a 2-D array or aerec.data.Interactions),
            typically not the training users: the model folds them in from their history.
            Without ``y``, a seeded random ``held_out_fraction`` of each row is
            held out (``aerec.data.splits.holdout_rows``) and the rest folded in. An EvalSet (or a
            Split's test set) is evaluated as ``aerec.evaluate`` does.
        y : users x items matrix, optional
            the held-out interactions of the rows of ``X`` (then ``X`` is only the fold-in).
        k : int > 0, default 100
        metric : str, default "ndcg"
            one of ``aerec.metrics.RANKING_METRICS``, at cut-off ``k``.
        held_out_fraction : float in (0, 1), default 0.2
        random_state : int, default 0
            seeds the hold-out draw: the same for every model scored on the same ``X``.
        user_ids, user_items : optional
            the aerec <= 0.1 call (deprecated): returns ``score_items(user_ids, user_items)``.

        Returns
        -------
        float
            ``metric@k`` averaged over the users with at least one held-out item (Liang et al.'s
            strong generalisation, as ``aerec.evaluate``).

        Notes
        -----
        For the item scores ``score(user_ids)`` returned in aerec <= 0.1, use
        :meth:`score_items`. Calls of that form (a user id or a 1-D list of them as ``X``, or
        ``user_ids=`` / ``user_items=``) still return the scores matrix, with a ``FutureWarning``;
        the alias goes away in a later release.
        """
        legacy = user_ids is not None or user_items is not None or _looks_like_ids(X)
        if legacy:
            if user_ids is not None and X is not None:
                raise TypeError("score() got user ids twice (positionally and as user_ids=); use "
                                "score_items(user_ids, user_items)")
            if user_items is not None and y is not None:
                raise TypeError("score() got histories twice (as y and as user_items=); use "
                                "score_items(user_ids, user_items)")
            import warnings
            warnings.warn("score(user_ids, user_items) returning the item-scores matrix is deprecated: it is "
                          "score_items(user_ids, user_items) now; score(X) returns one number (NDCG@100 on "
                          "held-out items of the users in X), as in scikit-learn", FutureWarning, stacklevel=2)
            return self.score_items(X if user_ids is None else user_ids, y if user_items is None else user_items)
        if X is None:
            raise TypeError("score() needs X: a users x items matrix of users to evaluate (a seeded "
                            f"{held_out_fraction!r} of each row is held out), or an aerec.data EvalSet; for "
                            "item scores use score_items(user_ids, user_items)")
        self._check_fitted("train_")
        from ..data.splits import EvalSet, Split, holdout_rows
        from ..evaluation import evaluate
        from ..metrics import RANKING_METRICS
        if not isinstance(metric, str) or metric not in RANKING_METRICS:
            raise ValueError(f"metric must be one of {list(RANKING_METRICS)}, got {metric!r}")
        k = _validation.check_k(k)
        if isinstance(X, (EvalSet, Split)):
            if y is not None:
                raise TypeError("y goes with a matrix X (its held-out part); an EvalSet holds its own held_out")
            ev = X
        else:
            if not self.supports_fold_in:
                raise TypeError(f"{type(self).__name__} cannot fold in users from their history, so score(X) "
                                "cannot evaluate them; evaluate its training users with aerec.evaluate("
                                "model, split) on a random_split (known users)")
            if hasattr(X, "to_csr") and not sp.issparse(X):
                X = X.to_csr()
            n_items = self.train_.shape[1]
            if y is None:
                ev = holdout_rows(as_csr(X, "X", n_cols=n_items), held_out_fraction, random_state=random_state)
            else:
                from ..data.splits import EvalSet as _EvalSet
                fold_in = as_csr(X, "X", n_cols=n_items)
                held = as_csr(y.to_csr() if hasattr(y, "to_csr") and not sp.issparse(y) else y, "y",
                              n_cols=n_items)
                if held.shape[0] != fold_in.shape[0]:
                    raise ValueError(f"y has {held.shape[0]} rows for the {fold_in.shape[0]} rows of X; pass one "
                                     "held-out row per user of X")
                ev = _EvalSet(users=np.arange(fold_in.shape[0], dtype=np.int64), fold_in=fold_in,
                              held_out=held, known_users=False)
        res = evaluate(self, ev, ks=(k,), metrics=(metric,))
        if res.get("n_users", 0) == 0:
            raise ValueError("no user of X has a held-out item to score (each needs at least 2 interactions "
                             "for a hold-out); pass more users or y=<their held-out items>")
        return float(res[f"{metric}@{k}"])

    def _item_map(self, what):
        maps = getattr(self, "id_maps_", None)
        if maps is None or maps[1] is None:
            raise ValueError(f"{what} needs raw ids, and this model was fitted on a plain matrix, so it has no "
                             "raw id maps: "
                             "fit it on aerec.data.Interactions (e.g. aerec.data.from_dataframe(df, 'user', "
                             "'item')) to use raw ids, or use the index-based methods")
        return maps[1]

    def _raw_items_out(self, ids):
        imap = self.id_maps_[1]
        raw_items = np.asarray(imap.to_raw(np.where(ids >= 0, ids, 0)), dtype=object)
        raw_items[ids < 0] = None
        return raw_items

    def _history_rows(self, history, ignore_unknown):
        """One CSR row per new user from raw item ids: a flat list is one user, a list of lists
        several."""
        imap = self._item_map("recommend_raw(history=...)")
        if isinstance(history, (str, bytes)) or not isinstance(history, collections.abc.Iterable):
            raise TypeError("history must be a list of raw item ids (one new user) or a list of such lists "
                            f"(several), got {type(history).__name__}")
        if isinstance(history, (set, frozenset)) or isinstance(history, collections.abc.Iterator):
            history = list(history)
        history = list(history)
        nested = bool(history) and all(
            not isinstance(h, (str, bytes)) and isinstance(h, (list, tuple, set, frozenset, np.ndarray))
            for h in history)
        users = [list(h) for h in history] if nested else [history]
        indptr, cols = [0], []
        for h in users:
            idx = imap.to_index(h, missing="ignore" if ignore_unknown else "raise") if h else np.empty(0)
            idx = np.unique(np.asarray(idx, dtype=np.int64).reshape(-1))
            idx = idx[idx >= 0]
            cols.append(idx)
            indptr.append(indptr[-1] + idx.size)
        cols = np.concatenate(cols) if cols else np.empty(0, np.int64)
        X = sp.csr_matrix((np.ones(cols.size, np.float32), cols, np.asarray(indptr, np.int64)),
                          shape=(len(users), self.train_.shape[1]))
        return X, not nested

    @reads
    def recommend_raw(self, raw_user_ids=None, k=10, *, history=None, ignore_unknown=False, **kw):
        """Like ``recommend`` but takes and returns raw ids (model fitted on aerec.data.Interactions).

        Parameters
        ----------
        raw_user_ids : raw id or list of raw ids, optional
            training users (their stored history is used and excluded).
        history : list of raw item ids, or a list of such lists, optional
            instead of ``raw_user_ids``: the history of a user never seen in training (fold-in), e.g.
            ``model.recommend_raw(history=["tt0111161", "tt0068646"])``; a list of lists is one user
            each (2-D results). No CSR to build.
        ignore_unknown : bool, default False
            drop raw item ids of ``history`` the model does not know (items newer than the model)
            instead of raising ``UnknownIdError``.
        k, items, filter_items, filter_seen, ...
            as in ``recommend``; ``items`` (the candidates to rank) and ``filter_items`` are raw
            item ids too.

        Returns
        -------
        raw item ids (object array, ``None`` pads) and float32 scores; 1-D for one user.
        """
        self._check_fitted("train_")
        imap = self._item_map("recommend_raw")
        ignore_unknown = _validation.check_bool(ignore_unknown, "ignore_unknown")
        for key in ("items", "filter_items"):
            if kw.get(key) is not None:
                raw = kw[key]
                if isinstance(raw, (set, frozenset)) or isinstance(raw, collections.abc.Iterator):
                    raw = list(raw)
                raw = [raw] if np.ndim(raw) == 0 else list(raw)
                kw[key] = _raw_to_index(imap, raw, lambda msg, key=key: (
                    f"{key}: {msg} (recommend_raw takes raw item ids; use recommend() for item indices)"))
        if history is not None:
            if raw_user_ids is not None:
                raise ValueError("pass raw_user_ids (training users) or history (a new user's raw item ids), "
                                 "not both")
            if "user_items" in kw:
                raise ValueError("pass history (raw item ids) or use recommend(user_items=...), not both")
            try:
                X, scalar = self._history_rows(history, ignore_unknown)
            except KeyError as exc:
                raise UnknownIdError(f"history: {exc.args[0] if exc.args else exc} (pass ignore_unknown=True to "
                                     "drop items the model does not know)") from None
            ids, scores = self.recommend(user_items=X, k=k, **kw)
            raw_items = self._raw_items_out(ids)
            return (raw_items[0], scores[0]) if scalar else (raw_items, scores)
        if raw_user_ids is None:
            if kw.get("items") is not None:
                raise TypeError("raw_user_ids is None: recommend_raw's items= are the candidate items to rank; "
                                "pass a new user's raw item ids as history=[...]")
            raise TypeError("raw_user_ids is None; pass a raw user id or a list of them, or a new user's raw "
                            "item ids as history=[...]")
        umap = self.id_maps_[0]
        if umap is None:
            why = ("was saved without its training interactions and user ids (include_history=False)"
                   if not self.has_history else "has no raw user ids")
            raise ValueError(f"this {type(self).__name__} {why}; serve users by their history: "
                             "recommend_raw(history=[raw item ids])")
        scalar = np.ndim(raw_user_ids) == 0
        raw = [raw_user_ids] if scalar else list(raw_user_ids)
        rows = _raw_to_index(umap, raw, lambda msg: (
            f"{msg}; the model knows the raw user ids of its training data (fold new users in with "
            "recommend_raw(history=[raw item ids]))"))
        ids, scores = self.recommend(rows, k=k, **kw)
        raw_items = self._raw_items_out(ids)
        return (raw_items[0], scores[0]) if scalar else (raw_items, scores)

    @reads
    def similar_items_raw(self, raw_item_ids, k=10, filter_self=True):
        """``similar_items`` in raw ids: takes a raw item id (or a list) and returns raw item ids
        (object array, ``None`` pads) and cosine similarities. Needs a model fitted on
        aerec.data.Interactions (``similar_items`` takes and returns item indices)."""
        self._check_fitted("train_")
        imap = self._item_map("similar_items_raw")
        if raw_item_ids is None:
            raise TypeError("raw_item_ids is None; pass a raw item id or a list of them")
        if isinstance(raw_item_ids, (set, frozenset)):
            raise TypeError("raw_item_ids is a set, which has no order; pass a list")
        scalar = np.ndim(raw_item_ids) == 0
        raw = [raw_item_ids] if scalar else list(raw_item_ids)
        idx = _raw_to_index(imap, raw, lambda msg: f"{msg} (similar_items_raw takes raw item ids; "
                                                   "similar_items takes item indices)")
        ids, sims = self.similar_items(idx, k=k, filter_self=filter_self)
        out = self._raw_items_out(ids)
        return (out[0], sims[0]) if scalar else (out, sims)

    @reads
    def similar_items(self, item_ids, k=10, filter_self=True):
        """Items most similar to ``item_ids`` by cosine over the model's item vectors."""
        self._check_fitted("train_")
        k = _validation.check_k(k, self.train_.shape[1])
        filter_self = _validation.check_bool(filter_self, "filter_self")
        ids = _as_ids(item_ids, "item_ids")
        scalar = ids.ndim == 0
        ids = ids.reshape(-1)
        self._check_item_range(ids, "item_ids")
        from ..search import TopK
        V = np.ascontiguousarray(self.item_vectors(), dtype=np.float32)
        index = TopK(V, metric="cosine", backend=self.backend)  # packing is O(n d): cheap next to a search
        exclude = [np.array([i], np.int32) for i in ids] if filter_self else None
        out_ids, out_s = index.search(V[ids], k, exclude=exclude)
        return (out_ids[0], out_s[0]) if scalar else (out_ids, out_s)

    def item_vectors(self):
        """(n_items, d) item representation used by similar_items."""
        raise NotImplementedError(f"{type(self).__name__} has no item vectors")
