"""An independent PyTorch Mult-VAE / Mult-DAE following Liang et al. (2018) and their reference code
(dawenl/vae_cf): L2-normalised input, dropout 0.5, tanh, [I-600-200-600-I], multinomial
log-likelihood, KL annealed linearly to anneal_cap over total_anneal_steps, Adam(1e-3), batch 500.

Used by benchmarks/accuracy_ml100k.py (same splits and metrics as aerec) and
benchmarks/multvae_epoch.py (speed). PyTorch is an optional benchmark extra, never a dependency.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _torch():
    import torch
    return torch


class TorchMultVAE:
    def __init__(self, n_items, hidden=600, latent=200, dropout=0.5, variational=True, anneal_cap=0.2,
                 total_anneal_steps=200000, lr=1e-3, l2=0.0, seed=0, sparse_input=True, threads=2):
        torch = _torch()
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        nn = torch.nn
        self.variational = variational
        self.latent = latent
        self.enc = nn.ModuleList([nn.Linear(n_items, hidden), nn.Linear(hidden, 2 * latent if variational else latent)])
        self.dec = nn.ModuleList([nn.Linear(latent, hidden), nn.Linear(hidden, n_items)])
        for lin in list(self.enc) + list(self.dec):  # Liang et al.: Xavier weights, N(0, 0.001) biases
            nn.init.xavier_uniform_(lin.weight)
            nn.init.normal_(lin.bias, std=0.001)
        self.params = [p for m in list(self.enc) + list(self.dec) for p in m.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=lr, weight_decay=0.0)
        self.dropout, self.cap, self.total_anneal_steps, self.l2 = dropout, anneal_cap, total_anneal_steps, l2
        self.sparse_input = sparse_input
        self.update = 0
        self.n_items = n_items
        self.rng = np.random.default_rng(seed)

    def _to_torch(self, X: sp.csr_matrix):
        torch = _torch()
        X = X.tocsr().astype(np.float32)
        if self.sparse_input:
            coo = X.tocoo()
            idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
            return torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data), X.shape).coalesce()
        return torch.from_numpy(X.toarray())

    def _forward(self, X: sp.csr_matrix, training: bool):
        torch = _torch()
        F = torch.nn.functional
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        Xn = sp.diags(1.0 / norms) @ X
        if training and self.dropout > 0:  # dropout on the stored entries only (zeros stay zero)
            Xn = Xn.tocsr(copy=True)
            keep = self.rng.random(Xn.nnz) >= self.dropout
            Xn.data = np.where(keep, Xn.data / (1 - self.dropout), 0).astype(np.float32)
        xt = self._to_torch(Xn)
        h = torch.tanh(torch.sparse.mm(xt, self.enc[0].weight.T) + self.enc[0].bias if self.sparse_input
                       else self.enc[0](xt))
        h = self.enc[1](h)
        if self.variational:
            mu, logvar = h[:, :self.latent], h[:, self.latent:]
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if training else mu
            kl = 0.5 * torch.mean(torch.sum(torch.exp(logvar) + mu ** 2 - 1 - logvar, dim=1))
        else:
            z, kl = h, torch.zeros(())
        logits = self.dec[1](torch.tanh(self.dec[0](z)))
        return logits, kl

    def fit_epoch(self, X: sp.csr_matrix, batch_size=500, max_batches=None):
        torch = _torch()
        order = self.rng.permutation(X.shape[0])
        total, n = 0.0, 0
        for b, s in enumerate(range(0, X.shape[0], batch_size)):
            if max_batches is not None and b >= max_batches:
                break
            rows = X[order[s:s + batch_size]]
            logits, kl = self._forward(rows, training=True)
            target = torch.from_numpy(rows.toarray())
            nll = -torch.mean(torch.sum(torch.log_softmax(logits, dim=1) * target, dim=1))
            beta = min(self.cap, self.update / self.total_anneal_steps) if self.total_anneal_steps else self.cap
            loss = nll + beta * kl
            if self.l2:
                loss = loss + 0.5 * self.l2 * sum((p ** 2).sum() for n_, p in self._weights())
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.update += 1
            total += float(loss) * rows.shape[0]
            n += rows.shape[0]
        return total / max(n, 1)

    def _weights(self):
        for m in list(self.enc) + list(self.dec):
            yield "w", m.weight

    def scores(self, X: sp.csr_matrix, batch_size=2000):
        torch = _torch()
        out = []
        with torch.no_grad():
            for s in range(0, X.shape[0], batch_size):
                logits, _ = self._forward(X[s:s + batch_size], training=False)
                out.append(logits.numpy())
        return np.vstack(out) if out else np.zeros((0, self.n_items), np.float32)


class TorchRecommender:
    """Adapter giving the peer aerec's recommend() so aerec.evaluate scores it identically."""

    supports_fold_in = True

    def __init__(self, **kw):
        self.kw = kw

    def fit(self, train, validation=None, epochs=100, batch_size=500, k=100):
        from aerec.evaluation import evaluate
        X = train.to_csr() if hasattr(train, "to_csr") else sp.csr_matrix(train)
        X = (X > 0).astype(np.float32).tocsr()
        self.train_ = X
        self.net = TorchMultVAE(X.shape[1], **self.kw)
        best, best_state = -1.0, None
        for _ in range(epochs):
            self.net.fit_epoch(X, batch_size)
            if validation is not None:
                nd = evaluate(self, validation, ks=(k,))[f"ndcg@{k}"]
                if nd > best:
                    best = nd
                    best_state = [p.detach().clone() for p in self.net.params]
        if best_state is not None:
            for p, b in zip(self.net.params, best_state):
                p.data.copy_(b)
        return self

    def recommend(self, user_ids=None, user_items=None, k=10, filter_seen=True, **kw):
        from aerec.backends import get
        X = sp.csr_matrix(user_items) if user_items is not None else self.train_[np.asarray(user_ids)]
        X = (X > 0).astype(np.float32).tocsr()
        return get().select_topk(self.net.scores(X), k, X if filter_seen else None)
