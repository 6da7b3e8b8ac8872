"""``plot_history(model, path)``: a PNG of the training loss and the validation metric per epoch.

matplotlib is optional (``pip install 'aerec[plot]'``); it is imported only when a plot is made,
and only its object-oriented API is used (no pyplot, so no GUI backend is touched).
"""
from __future__ import annotations

import os

__all__ = ["plot_history"]


def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot_history needs matplotlib, which is not installed: pip install 'aerec[plot]' "
                          "(or pip install matplotlib)") from None
    return Figure


def plot_history(model, path="history.png", *, title: str | None = None, dpi: int = 100) -> str:
    """Save a PNG of a training history: the loss per epoch (with ``val_loss`` when recorded) and,
    in a second panel, every other validation metric (``val_ndcg@100``, ``val_rmse``, ...), with
    the epoch ``fit`` kept (``model.best_epoch_``) marked.

    Parameters
    ----------
    model : fitted aerec model, or dict
        a model with ``history_`` (``{"loss": [...], "val_...": [...]}``), or such a dict.
    path : str or os.PathLike
        the PNG to write (its folder must exist).
    title : str, optional
        default: the model's class name.
    dpi : int

    Returns
    -------
    str
        ``path``.
    """
    if isinstance(model, dict):
        history, best, name = model, None, "training history"
    elif hasattr(model, "history_") or callable(getattr(model, "fit", None)):  # unfitted: no history_
        history, best, name = getattr(model, "history_", None) or {}, getattr(model, "best_epoch_", None), \
            type(model).__name__
    else:
        raise TypeError(f"plot_history takes a fitted aerec model (with history_) or a history dict, got "
                        f"{type(model).__name__}")
    if not isinstance(history, dict) or not history or not any(len(v) for v in history.values()):
        raise ValueError("the training history is empty: fit the model (with epochs >= 1) before plotting "
                         "(EASE and Popularity have no epochs to plot)")
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} does not exist; create it first")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= 1000:
        raise ValueError(f"dpi must be an integer in [10, 1000], got {dpi!r}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a string, got {type(title).__name__}")
    Figure = _matplotlib_figure()

    losses = [k for k in ("loss", "val_loss") if history.get(k)]
    others = [k for k in history if k.startswith("val_") and k != "val_loss" and history[k]]
    panels = [p for p in (losses, others) if p]
    fig = Figure(figsize=(5.5 * len(panels), 4.0), dpi=dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, keys in zip(axes, panels):
        for key in keys:
            values = [float(v) for v in history[key]]
            ax.plot(range(1, len(values) + 1), values, marker="o" if len(values) <= 30 else None,
                    markersize=3, label=key)
        if best is not None:
            ax.axvline(int(best) + 1, color="grey", linestyle="--", linewidth=1, label=f"kept: epoch {int(best) + 1}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if keys is losses else "validation metric")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title if title is not None else name)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
