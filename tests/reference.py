#!/usr/bin/python3
"""reference.py -- an independent NumPy implementation of SPEC sections 1-2, to check ufm against.

  reference.py step  START_DIR END_DIR   (config from END_DIR/config.ini)
      runs `iterations` GD / momentum steps from START_DIR's W.npy, H.npy, b.npy
      and compares with END_DIR's final state (relative 1e-9).
  reference.py metrics RUN_DIR
      recomputes every metric from RUN_DIR's saved state (with p x p and
      N x N matrices, plainly) and compares with its summary.tsv.
  reference.py grams RUN_DIR
      checks RUN_DIR/grams.npy (shape (6, C', C'), every K-th class, K the
      summary's grams_stride): W W^T, M^T M and W M of the saved state and
      their SELI references from P D P's eigendecomposition, each divided by
      the Frobenius norm of its whole C x C matrix (1e-12); for balanced
      counts the references are the simplex ETF.
Exit status 0 when everything agrees, 1 otherwise.
"""
import sys
import numpy as np


def config(d):
    cfg = {}
    for line in open(f"{d}/config.ini"):
        line = line.split("#")[0].strip()
        if line:
            k, v = (s.strip() for s in line.split("=", 1))
            cfg[k] = v
    return cfg


def labels_of(d):
    return np.load(f"{d}/labels.npy")


def logits(W, H, b):
    return W @ H + b[:, None]


def loss_grad(cfg, W, H, b, y):
    C, N = W.shape[0], H.shape[1]
    Z = logits(W, H, b)
    Y = np.zeros((C, N))
    Y[y, np.arange(N)] = 1
    if cfg["loss"] == "ce":
        m = Z.max(axis=0)
        E = np.exp(Z - m)
        S = E.sum(axis=0)
        loss = np.mean(np.log(S) + m - Z[y, np.arange(N)])
        G = (E / S - Y) / N
    else:
        loss = 0.5 * np.sum((Z - Y) ** 2) / N
        G = (Z - Y) / N
    lW, lH, lb = (float(cfg[k]) for k in ("lambda_W", "lambda_H", "lambda_b"))
    gW = G @ H.T + lW * W
    gH = W.T @ G + lH * H
    gb = G.sum(axis=1) + lb * b if cfg["bias"] == "true" else np.zeros_like(b)
    obj = loss + 0.5 * (lW * np.sum(W * W) + lH * np.sum(H * H) + lb * np.sum(b * b))
    return loss, obj, gW, gH, gb, Z


def rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def step(start, end):
    cfg = config(end)
    W, H, b = (np.load(f"{start}/{n}.npy") for n in ("W", "H", "b"))
    if cfg["bias"] != "true":
        b = np.zeros_like(b)
    y = labels_of(end)
    lr, mu = float(cfg["lr"]), float(cfg["momentum"])
    vW, vH, vb = np.zeros_like(W), np.zeros_like(H), np.zeros_like(b)
    for _ in range(int(cfg["iterations"])):
        _, _, gW, gH, gb, _ = loss_grad(cfg, W, H, b, y)
        if cfg["optimizer"] == "momentum":
            vW, vH, vb = mu * vW + gW, mu * vH + gH, mu * vb + gb
            gW, gH, gb = vW, vH, vb
        W, H, b = W - lr * gW, H - lr * gH, b - lr * gb
    ok = True
    for name, ref in (("W", W), ("H", H), ("b", b)):
        got = np.load(f"{end}/{name}.npy")
        r = rel(got, ref)
        print(f"step {cfg['loss']} bias={cfg['bias']} {cfg['optimizer']}: {name} relative difference {r:.2e}")
        ok &= r < 1e-9
    return ok


def gram_metrics(V):
    """V: C vectors as columns."""
    C = V.shape[1]
    G = V.T @ V
    nrm = np.sqrt(np.diag(G))
    cos = G / np.outer(nrm, nrm)
    off = cos[~np.eye(C, dtype=bool)]
    E = (np.eye(C) - np.ones((C, C)) / C) / np.sqrt(C - 1)
    return (nrm.std() / nrm.mean(), off.std(), np.mean(np.abs(off + 1 / (C - 1))),
            np.linalg.norm(G / np.linalg.norm(G) - E))


def metrics(d):
    cfg = config(d)
    W, H, b = (np.load(f"{d}/{n}.npy") for n in ("W", "H", "b"))
    y = labels_of(d)
    C, p = W.shape
    N = H.shape[1]
    loss, obj, gW, gH, gb, Z = loss_grad(cfg, W, H, b, y)
    mu = np.stack([H[:, y == c].mean(axis=1) for c in range(C)], axis=1)
    muG = H.mean(axis=1)
    M = mu - muG[:, None]
    D = H - mu[:, y]
    SW = D @ D.T / N
    SB = M @ M.T / C
    nc1 = np.trace(SW @ np.linalg.pinv(SB, rcond=max(p, C) * np.finfo(float).eps, hermitian=True)) / C
    s2 = np.array([np.mean(np.sum(D[:, y == c] ** 2, axis=0)) for c in range(C)])
    cd = [(s2[c] + s2[e]) / (2 * np.sum((mu[:, c] - mu[:, e]) ** 2)) for c in range(C) for e in range(c + 1, C)]
    eqnM, eqaM, maxM, etfM = gram_metrics(M)
    eqnW, eqaW, maxW, etfW = gram_metrics(W.T)
    pred = Z.argmax(axis=0)
    dist = ((H[:, :, None] - mu[:, None, :]) ** 2).sum(axis=0)
    ncc = dist.argmin(axis=1)
    Zy = Z[y, np.arange(N)]
    Zo = Z.copy()
    Zo[y, np.arange(N)] = -np.inf
    margin = np.min(Zy - Zo.max(axis=0))
    nW2, nH2 = np.sum(W * W), np.sum(H * H)
    ref = {
        "loss": loss, "objective": obj, "acc": np.mean(pred == y), "nc1": nc1, "cdnv": np.mean(cd),
        "equinorm_M": eqnM, "equinorm_W": eqnW, "equiangle_M": eqaM, "equiangle_W": eqaW,
        "maxangle_M": maxM, "maxangle_W": maxW, "etf_M": etfM, "etf_W": etfW,
        "nc3": np.sum((W.T / np.sqrt(nW2) - M / np.linalg.norm(M)) ** 2),
        "nc4": np.mean(pred != ncc), "norm_W": np.sqrt(nW2), "norm_H": np.sqrt(nH2),
        "norm_b": np.linalg.norm(b), "margin": margin, "nmargin": margin / (0.5 * (nW2 + nH2)),
        "grad_norm": np.sqrt(np.sum(gW ** 2) + np.sum(gH ** 2) + np.sum(gb ** 2)),
    }
    # imbalance columns, with the N x N matrices formed plainly
    counts = np.bincount(y, minlength=C)
    sizes = sorted(set(counts.tolist()))
    minority = [c for c in range(C) if len(sizes) == 2 and counts[c] == sizes[0]]

    def mc_cos(G):
        if len(minority) < 2:
            return float("nan")
        nrm = np.sqrt(np.diag(G))
        return np.mean([G[a, b] / (nrm[a] * nrm[b]) for a in minority for b in minority if a != b])

    def ndist(A, B):
        return np.linalg.norm(A / np.linalg.norm(A) - B / np.linalg.norm(B))

    Y = np.zeros((C, N))
    Y[y, np.arange(N)] = 1
    Zhat = Y - 1.0 / C
    U, L, Vt = np.linalg.svd(Zhat, full_matrices=False)
    L[L < C * np.finfo(float).eps * L[0]] = 0
    ref["mc_cos_W"] = mc_cos(W @ W.T)
    ref["mc_cos_M"] = mc_cos(M.T @ M)
    if len(minority) >= 2:
        nw = np.linalg.norm(W, axis=1)
        ref["mc_dist_W"] = np.mean([np.linalg.norm(W[a] - W[b]) for a in minority for b in minority
                                    if a != b]) / nw.mean()
    else:
        ref["mc_dist_W"] = float("nan")
    ref["seli_W"] = ndist(W @ W.T, U @ np.diag(L) @ U.T)
    ref["seli_H"] = ndist(H.T @ H, Vt.T @ np.diag(L) @ Vt)
    ref["seli_Z"] = ndist(Z, Zhat)
    got = dict(line.rstrip("\n").split("\t", 1) for line in open(f"{d}/summary.tsv"))
    ok = True
    for k, v in ref.items():
        g = float(got[k])
        # absolute floor: values at rounding level (a collapsed state's 1e-30) differ in their noise;
        # seli_H and seli_Z are computed as sqrt(2 - 2 cos): about 1e-8 absolute
        tol = 2e-8 if k in ("seli_H", "seli_Z", "mc_dist_W") else 1e-12
        good = (np.isnan(g) and np.isnan(v)) or abs(g - v) <= 1e-8 * abs(v) + tol
        ok &= good
        if not good:
            print(f"metrics {d}: {k} = {g!r}, reference {v!r}  MISMATCH")
    print(f"metrics {d}: {len(ref)} columns checked, {'all agree' if ok else 'MISMATCH'}")
    return ok


def grams(d):
    """grams.npy: rows and columns 0, K, 2K, ... (K = summary.tsv's
    grams_stride, 1 if absent) of W W^T, M^T M and W M and of their SELI
    references, each divided by the Frobenius norm of the whole C x C
    matrix; the references from the eigendecomposition of P D P."""
    W, H = np.load(f"{d}/W.npy"), np.load(f"{d}/H.npy")
    y = labels_of(d)
    C = W.shape[0]
    summ = dict(line.rstrip("\n").split("\t", 1) for line in open(f"{d}/summary.tsv"))
    K = int(summ.get("grams_stride", "1"))
    idx = np.arange(0, C, K)
    g = np.load(f"{d}/grams.npy")
    ok = g.shape == (6, len(idx), len(idx)) and g.dtype == np.float64
    if not ok:
        print(f"grams {d}: shape {g.shape} dtype {g.dtype}, expected (6, {len(idx)}, {len(idx)}) float64  MISMATCH")
        return False
    mu = np.stack([H[:, y == c].mean(axis=1) for c in range(C)], axis=1)
    M = mu - H.mean(axis=1)[:, None]
    unit = lambda A: A / np.linalg.norm(A)
    n = np.bincount(y, minlength=C).astype(float)
    N = n.sum()
    P = np.eye(C) - np.ones((C, C)) / C
    e, U = np.linalg.eigh(P @ np.diag(n) @ P)
    keep = e > C * np.finfo(float).eps * e.max()
    s = np.sqrt(e[keep])
    ULU = (U[:, keep] * s) @ U[:, keep].T
    Kp = (U[:, keep] / s) @ U[:, keep].T
    u = n / N
    Iu = np.eye(C) - np.outer(np.ones(C), u)
    want = [unit(W @ W.T), unit(M.T @ M), unit(W @ M),
            unit(ULU), unit(Iu @ Kp @ Iu.T), unit(np.eye(C) - 1.0 / C - np.outer((n - N / C) / N, np.ones(C)))]
    if np.all(n == n[0]):
        etf = unit(P)
        ok &= all(np.max(np.abs(want[k] - etf)) <= 1e-12 for k in (3, 4))
    for k, name in enumerate(["W W^T", "M^T M", "W M", "ref W W^T", "ref M^T M", "ref W M"]):
        err = np.max(np.abs(g[k] - want[k][np.ix_(idx, idx)]))
        good = err <= 1e-12
        ok &= bool(good)
        print(f"grams {d}: {name}: error {err:.2e}{'' if good else '  MISMATCH'} (stride {K})")
    return ok


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "grams":
        sys.exit(0 if grams(sys.argv[2]) else 1)
    if len(sys.argv) == 4 and sys.argv[1] == "step":
        sys.exit(0 if step(sys.argv[2], sys.argv[3]) else 1)
    if len(sys.argv) == 3 and sys.argv[1] == "metrics":
        sys.exit(0 if metrics(sys.argv[2]) else 1)
    print(__doc__)
    sys.exit(2)
