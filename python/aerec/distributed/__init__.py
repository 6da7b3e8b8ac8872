"""Beyond one machine: data-parallel training over MPI, batch scoring on Dask.

Both engines are optional extras, imported only when used: ``pip install 'aerec[mpi]'`` (mpi4py
and the ``mpich`` wheel, which brings ``mpiexec``) and ``pip install 'aerec[dask]'`` (dask,
distributed, pyarrow).

Training (MPI)
--------------
Every model that trains by minibatches (MultVAE, MultDAE, CDAE, AutoRec, Autoencoder) takes
``fit(..., distributed="mpi")``; EASE takes ``fit(train, distributed="mpi")`` (a distributed Gram
matrix). Run the script under ``mpiexec -n N``; every rank loads the same data and calls ``fit``
alike, and only rank 0 should write files::

    # train.py                                    mpiexec -n 4 python train.py
    import aerec
    from aerec.distributed import rank
    train = aerec.data.load_npz("train.npz")
    model = aerec.MultVAE(epochs=50).fit(train, distributed="mpi")
    if rank() == 0:
        model.save("multvae.npz")

or from the command line: ``mpiexec -n 4 aerec train data.csv -o m.npz --distributed mpi``. The
step, the communication and the fault handling are described in :mod:`aerec.distributed._mpi`.
``AEREC_MPI_TIMEOUT`` (seconds, default 300) bounds any wait for a peer; ``AEREC_MPI_CHECK=1``
compares a checksum of the parameters across ranks after every epoch (a debug check);
``AEREC_MPI_SHARD=0`` turns the sharded optimizer step off (every rank applies the whole step).

Scoring (Dask)
--------------
:func:`recommend_dask` scores users on a Dask cluster and writes Parquet partitions of
(user, rank, item, score).
"""
from __future__ import annotations

import os

__all__ = ["data_parallel", "rank", "size", "RankFailedError", "recommend_dask"]


def __getattr__(name):
    if name == "RankFailedError":
        from ._mpi import RankFailedError
        return RankFailedError
    raise AttributeError(f"module 'aerec.distributed' has no attribute {name!r}")


def _world():
    """MPI.COMM_WORLD when mpi4py is installed and this process runs under an MPI launcher, else None."""
    if not any(k in os.environ for k in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_SIZE")):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD


def rank() -> int:
    """This process's MPI rank (0 outside an MPI job or without mpi4py)."""
    w = _world()
    return 0 if w is None else w.Get_rank()


def size() -> int:
    """The number of MPI ranks (1 outside an MPI job or without mpi4py)."""
    w = _world()
    return 1 if w is None else w.Get_size()


def data_parallel(distributed, net, x, y, *, mask=None, users=None, batch_size=32, check_params=None,
                  shard=None):
    """A :class:`aerec.distributed._mpi.DataParallel` over ``distributed`` ("mpi" or an mpi4py
    communicator): what a model's ``fit(distributed=...)`` trains with.

    ``check_params`` (default: env ``AEREC_MPI_CHECK`` set to 1) compares a checksum of the
    replicated parameters across ranks after every epoch. ``shard`` (default: env
    ``AEREC_MPI_SHARD``, 1 unless set to 0) shards the optimizer step over the ranks (ZeRO stage
    1: Reduce_scatter of the gradient, each rank steps its block, Allgatherv of the parameters);
    0 sums the whole gradient (Allreduce) and every rank applies the whole step."""
    from ._mpi import DataParallel
    if check_params is None:
        check_params = os.environ.get("AEREC_MPI_CHECK", "0") not in ("", "0")
    if shard is None:
        shard = os.environ.get("AEREC_MPI_SHARD", "1") not in ("", "0")
    return DataParallel(distributed, net, x, y, mask=mask, users=users, batch_size=batch_size,
                        check_params=check_params, shard=shard)


def recommend_dask(model_path, users, k=100, filter_seen=True, output="recs/", client=None, **kw):
    """Score ``users`` with the model file ``model_path`` on a Dask cluster; see
    :func:`aerec.distributed._dask.recommend_dask`."""
    from ._dask import recommend_dask as _run
    return _run(model_path, users, k=k, filter_seen=filter_seen, output=output, client=client, **kw)
