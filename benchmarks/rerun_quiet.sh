#!/bin/bash
# The timed figures of issues 9, 10 and 12, one after the other, each under the benchmark lock:
# run on a quiet machine (benchmarks/RESULTS.md "Quiet reruns on the merged main"). ~12 minutes.
cd "$(dirname "$0")/.."
export PYTHONPATH=python NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/aerec-nbcache-rerun} AEREC_DATA=${AEREC_DATA:-../shared/data}
L="flock /tmp/aerec-bench.lock"
sec() { echo; echo "=================== $* ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"; }
sec dist pairs;      python benchmarks/bench_distributed.py pairs --lock /tmp/aerec-bench.lock --runs 3
sec compress amx;    $L python benchmarks/compress_throughput.py --users 2000 --repeat 3
sec compress avx2 no-avxvnni; AEREC_ISA=avx2 AEREC_AVX_VNNI=0 $L python benchmarks/compress_throughput.py --users 2000 --repeat 3
sec compress avx2 avxvnni;    AEREC_ISA=avx2 $L python benchmarks/compress_throughput.py --users 2000 --repeat 3 --variants fp32,int8
sec compress avx512 bf16; AEREC_ISA=avx512 $L python benchmarks/compress_throughput.py --users 2000 --repeat 3 --variants fp32,bf16,int8
sec topk avx2 1.25 no-avxvnni; AEREC_ISA=avx2 AEREC_AVX_VNNI=0 $L python benchmarks/topk_table.py --threads 2 --workloads W1 --methods fp32,fp32-prune,int8,int8-prune,bf16 --repeat 3
sec topk avx2 1.25 avxvnni;    AEREC_ISA=avx2 $L python benchmarks/topk_table.py --threads 2 --workloads W1 --methods fp32,int8 --repeat 3
sec topk best;       $L python benchmarks/topk_table.py --threads 2 --workloads W1 --methods fp32,int8,int8-prune,bf16 --repeat 3
sec numba;           $L python benchmarks/bench_numba.py --only tutorial,recommend --repeat 3 --skip-compile
sec numba multvae;   $L python benchmarks/bench_numba.py --only multvae --skip-compile
[ -d /tmp/ease-ab ] || python benchmarks/ease_prune_recommend_ab.py --dir /tmp/ease-ab --build
sec ease amx;        $L python benchmarks/ease_prune_recommend_ab.py --dir /tmp/ease-ab --users 3000 --repeat 3
sec ease avx2;       AEREC_ISA=avx2 $L python benchmarks/ease_prune_recommend_ab.py --dir /tmp/ease-ab --users 3000 --repeat 3
sec done
