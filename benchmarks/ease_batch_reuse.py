"""EASE recommend at 20,108 items by batch size: exact dense B against B pruned to 10% with bf16
values (the saved models of `ease_prune_recommend_ab.py --build` in /tmp/ease-ab). Shows how much of
the exact path's speed is row reuse across a batch's users.

    PYTHONPATH=python flock /tmp/aerec-bench.lock python benchmarks/ease_batch_reuse.py
"""
import os, statistics, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aerec
from ease_prune_recommend_ab import data
aerec.set_num_threads(2)
_, held = data(2000)
for name in ["exact", "magnitude-0.1+bf16"]:
    m = aerec.EASE.load(f"/tmp/ease-ab/{name}.npz")
    m.recommend(user_items=held[:200], k=100)
    for bs in (1000, 64, 8):
        ts = []
        for _ in range(3):
            t0 = time.perf_counter(); m.recommend(user_items=held, k=100, batch_size=bs); ts.append(time.perf_counter() - t0)
        print(f"{name:<20} batch {bs:5d}: {2000 / statistics.median(ts):8,.0f} users/s", flush=True)
