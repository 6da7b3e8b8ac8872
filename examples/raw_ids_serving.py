"""Raw ids end to end, from the Python API: a CSV with string ids -> fit -> save -> load in a new
process -> recommend for a known user, for a new user from raw item ids, similar items, all in raw
ids -> batch-score every user to a file (Parquet when pyarrow is installed, else CSV).

    python examples/raw_ids_serving.py [WORKDIR]
"""
from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

import aerec


def make_csv(path: pathlib.Path, n_users=300, n_items=80, seed=0):
    """A small interaction log with string ids ("user-17", "item-b042"), taste clusters inside."""
    rng = np.random.default_rng(seed)
    lines = ["user,item"]
    for u in range(n_users):
        group = u % 4
        items = rng.choice(20, size=8, replace=False) + 20 * group  # each group likes its own 20 items
        items = np.r_[items, rng.choice(n_items, size=2)]
        lines += [f"user-{u},item-b{i:03d}" for i in np.unique(items)]
    path.write_text("\n".join(lines) + "\n")


def main(work: pathlib.Path):
    csv = work / "log.csv"
    make_csv(csv)
    data = aerec.data.read_csv(csv)  # raw ids -> row / column indices, kept in the model
    print(f"data: {data!r}")
    model = aerec.MultDAE(hidden=(64,), latent=16, epochs=30, batch_size=32, random_state=0).fit(data)
    model.save(work / "model.npz")                              # with the training interactions
    model.save(work / "serve.npz", include_history=False)       # a serving artefact, smaller
    print(f"saved: model.npz {(work / 'model.npz').stat().st_size:,} B, "
          f"serve.npz {(work / 'serve.npz').stat().st_size:,} B (no interactions, no user ids)")

    # a new process, as a server would be
    code = textwrap.dedent(f"""
        import aerec
        full = aerec.load({str(work / 'model.npz')!r})
        ids, scores = full.recommend_raw("user-5", k=5)
        print("known user user-5:", list(ids))
        serve = aerec.load({str(work / 'serve.npz')!r})
        ids, scores = serve.recommend_raw(history=["item-b001", "item-b007", "item-b013"], k=5)
        print("new user (item-b001, item-b007, item-b013):", list(ids))
        sims, cos = serve.similar_items_raw("item-b001", k=5)
        print("similar to item-b001:", list(sims))
        print(serve.card["data"]["shape"], "training matrix; fitted", serve.card["created"])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    print(out.stdout, end="")

    # batch scoring: every training user's top 10, in batches, raw ids out
    model = aerec.load(work / "model.npz")
    users = model.id_maps_[0].raw_ids
    rows = []
    for s in range(0, len(users), 128):
        batch = list(users[s:s + 128])
        ids, scores = model.recommend_raw(batch, k=10)
        for u, i, sc in zip(batch, ids, scores):
            rows += [(u, r + 1, item, float(v)) for r, (item, v) in enumerate(zip(i, sc)) if item is not None]
    import pandas as pd
    recs = pd.DataFrame(rows, columns=["user", "rank", "item", "score"])
    try:
        target = work / "recs.parquet"
        recs.to_parquet(target)
    except ImportError:  # no pyarrow / fastparquet: CSV
        target = work / "recs.csv"
        recs.to_csv(target, index=False)
    print(f"batch-scored {recs['user'].nunique()} users -> {target.name} ({len(recs)} rows)")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(pathlib.Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(pathlib.Path(d))
