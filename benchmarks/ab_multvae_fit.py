"""A/B of a MultVAE fit and fold-in recommend between two builds (run once per build, interleaved).

    flock /tmp/aerec-bench.lock env PYTHONPATH=<old>/python python benchmarks/ab_multvae_fit.py old
    flock /tmp/aerec-bench.lock env PYTHONPATH=<new>/python python benchmarks/ab_multvae_fit.py new
"""
import time, sys, numpy as np, aerec
from aerec.data.splits import strong_generalization_split
d = aerec.datasets.synthetic(n_users=6000, n_items=3000, random_state=0)
sp_ = strong_generalization_split(d, 500, 500, random_state=0)
ts=[]
for r in range(3):
    t=time.perf_counter(); m=aerec.MultVAE(epochs=10, batch_size=500, random_state=0).fit(sp_.train); ts.append(time.perf_counter()-t)
t=time.perf_counter(); 
for _ in range(5): ids,_s=m.recommend(user_items=sp_.test.fold_in, k=100)
tr=(time.perf_counter()-t)/5
print(sys.argv[1], "fit10 median %.2fs" % np.median(ts), "recommend fold-in %.3fs" % tr, ts)
