"""Item features with an autoencoder: the Keras tutorial case, then real MovieLens item attributes.

Part 1 is exactly the classic tutorial: X = rng.random((1000, 10)), first 800 rows train, last 200
validation, Input(10) -> Dense(64, relu) -> Dense(10, sigmoid), MSE, Adam(1e-3), batch 32, 100
epochs, validation every epoch; then one new item [0.1, 0.2, ..., 1.0] is encoded.

Part 2 encodes MovieLens-100K films from their attributes (19 genre flags + release year scaled to
[0, 1]) through an 8-unit bottleneck and lists the 10 films closest to "Toy Story (1995)" by cosine
similarity of the encodings. It needs ml-100k: pass its folder, or set AEREC_DATA to the folder that
holds ml-100k/ (the data is not shipped; see aerec.datasets.movielens to download it).

    python examples/item_features_autoencoder.py [path/to/ml-100k]
"""
from __future__ import annotations

import os
import pathlib
import sys
import time

import numpy as np

import aerec


def tutorial():
    x = np.random.default_rng(0).random((1000, 10), dtype=np.float32)
    x_train, x_val = x[:800], x[800:]
    ae = aerec.Autoencoder(hidden=(64,), activation="relu", output_activation="sigmoid",
                           loss="mse", optimizer="adam", learning_rate=1e-3, random_state=0)
    t0 = time.perf_counter()
    ae.fit(x_train, epochs=100, batch_size=32, validation_data=x_val)
    dt = time.perf_counter() - t0
    print(f"tutorial: 100 epochs in {dt:.3f} s on backend {ae.net_.__module__.split('.')[-1]!r}; "
          f"final loss {ae.history_['loss'][-1]:.3e}, val_loss {ae.history_['val_loss'][-1]:.3e}")
    new_item = np.arange(1, 11, dtype=np.float32) / 10  # [0.1, 0.2, ..., 1.0]
    code = ae.encode(new_item)
    shown = "[" + ", ".join(f"{v:.1f}" for v in new_item) + "]"
    print(f"encoding of the new item {shown}: shape {code.shape}, "
          f"{int((code > 0).sum())} active units")
    print("reconstruction: [" + ", ".join(f"{v:.3f}" for v in ae.predict(new_item)) + "]")
    return ae


def read_items(folder: pathlib.Path):
    """u.item -> (titles, features[n, 20]): 19 genre flags + release year scaled to [0, 1]."""
    titles, years, genres = [], [], []
    with open(folder / "u.item", encoding="latin-1") as f:
        for line in f:
            parts = line.rstrip("\n").split("|")
            if len(parts) < 24:
                continue
            titles.append(parts[1])
            date = parts[2]
            years.append(float(date[-4:]) if len(date) >= 4 and date[-4:].isdigit() else np.nan)
            genres.append([float(g) for g in parts[5:24]])
    years = np.asarray(years)
    years[np.isnan(years)] = np.nanmedian(years)  # one film has no date
    year01 = (years - years.min()) / (years.max() - years.min())
    feats = np.column_stack([np.asarray(genres, dtype=np.float32), year01.astype(np.float32)])
    return titles, feats


def movielens_items(folder: pathlib.Path):
    titles, feats = read_items(folder)
    ae = aerec.Autoencoder(hidden=(32, 8, 32), activation=("relu", "tanh", "relu"),
                           output_activation="sigmoid", loss="bce", learning_rate=3e-3, random_state=0)
    ae.fit(feats, epochs=150, batch_size=32)
    codes = ae.encode(feats)  # (n_films, 8)
    print(f"\nMovieLens-100K: {len(titles)} films x {feats.shape[1]} attributes -> 8-unit codes; "
          f"final BCE {ae.history_['loss'][-1]:.4f}")
    query = titles.index("Toy Story (1995)")
    ids, scores = cosine_top_k(codes, codes[query], k=11)
    print(f'10 films most similar to "{titles[query]}" by their encodings:')
    rank = 0
    for i, s in zip(ids, scores):
        if i == query:
            continue
        rank += 1
        print(f"  {rank:2d}. {titles[i]:<55s} cos={s:.3f}")
        if rank == 10:
            break


def cosine_top_k(items, query, k):
    try:
        from aerec.search import TopK
        return TopK(items, metric="cosine").search(query, k)
    except ImportError:
        norms = np.linalg.norm(items, axis=1) * np.linalg.norm(query)
        sims = items @ query / np.where(norms == 0, 1, norms)
        order = np.lexsort((np.arange(len(sims)), -sims))[:k]
        return order, sims[order]


def main(argv):
    tutorial()
    folder = pathlib.Path(argv[1]) if len(argv) > 1 else \
        pathlib.Path(os.environ.get("AEREC_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data")) / "ml-100k"
    if (folder / "u.item").exists():
        movielens_items(folder)
    else:
        print(f"\n(skipping the MovieLens part: {folder / 'u.item'} not found; pass the ml-100k folder)")


if __name__ == "__main__":
    main(sys.argv)
