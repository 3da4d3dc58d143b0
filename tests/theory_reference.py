#!/usr/bin/python3
"""theory_reference.py -- an independent NumPy check of `ufm theory` (THEORY.md).

  theory_reference.py formulas UFM     closed forms recomputed in NumPy, by a
                                       different route than src/theory.c: full
                                       SVDs of the C x N label matrices (not
                                       C x C Gram matrices), the MSE bias with
                                       lambda_b > 0 by a golden-section search,
                                       the CE bias at W = H = 0 by Newton's
                                       method; compared with the printed values
                                       and the --out matrices (rtol 1e-9)
  theory_reference.py minimise UFM     direct numerical minimisation of
                                       F(W, H, b) by gradient descent written
                                       here in NumPy (not ufm's code), compared
                                       with the printed objective, loss and
                                       norms (rtol 1e-6)

Conventions are SPEC section 1's: loss averaged over N, penalties
(lambda/2)||.||^2. Prints one line per check; exit status 0 iff all pass.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

FAILS = []


def report(ok, what):
    print(("ok   - " if ok else "FAIL - ") + what)
    if not ok:
        FAILS.append(what)


def close(x, ref, rtol, atol=0.0):
    return abs(x - ref) <= atol + rtol * abs(ref)


def theory(ufm, args, outdir=None):
    cmd = [ufm, "theory"] + args + (["--out", outdir] if outdir else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("%s failed: %s" % (" ".join(cmd), r.stderr))
    d = {}
    for line in r.stdout.splitlines():
        k, v = line.split("\t", 1)
        try:
            d[k] = float(v)
        except ValueError:
            d.setdefault(k, v)
    return d


def onehot(counts):
    C, N = len(counts), sum(counts)
    y = np.repeat(np.arange(C), counts)
    Y = np.zeros((C, N))
    Y[y, np.arange(N)] = 1
    return Y, y


# ------------------------------------------------------------------ closed forms

def mse_reference(counts, lW, lH, bias, lb):
    """MSE minimiser by the soft-thresholding of T = Y - b 1^T (full SVD).
    With lambda_b > 0 (balanced, b = beta 1 by symmetry) beta minimises the
    convex g(beta) = sum_k phi(s_k(Y - beta 1 1^T)) + lambda_b C beta^2 / 2,
    phi(s) = min(s, N mu)^2/(2N) + mu (s - N mu)_+: bisection on the sign of
    g'(beta) = -sum_k phi'(s_k) (1^T u_k)(1^T v_k) + lambda_b C beta, from the
    full SVD (a search on g itself would stop at ~sqrt(eps))."""
    C, N = len(counts), sum(counts)
    Y, y = onehot(counts)
    mu = np.sqrt(lW * lH)

    def dg(beta):
        U, s, Vt = np.linalg.svd(Y - beta, full_matrices=False)
        dphi = np.where(s <= N * mu, s / N, mu)
        return -np.sum(dphi * U.sum(0) * Vt.sum(1)) + lb * C * beta

    if not bias:
        b = np.zeros(C)
    elif lb == 0:
        b = np.array(counts, float) / N
    else:
        lo, hi = 0.0, 1.0 / C
        for _ in range(200):
            mid = (lo + hi) / 2
            if dg(mid) > 0:
                hi = mid
            else:
                lo = mid
        b = np.full(C, (lo + hi) / 2)
    T = Y - b[:, None]
    U, s, Vt = np.linalg.svd(T, full_matrices=False)
    sp = np.maximum(s - N * mu, 0)
    W = (lH / lW) ** 0.25 * U * np.sqrt(sp)
    H = (lW / lH) ** 0.25 * np.sqrt(sp)[:, None] * Vt
    Z = W @ H + b[:, None]
    loss = np.sum((Z - Y) ** 2) / (2 * N)
    obj = loss + lW / 2 * np.sum(W * W) + lH / 2 * np.sum(H * H) + lb / 2 * np.sum(b * b)
    means = np.stack([H[:, y == c].mean(1) for c in range(C)], 1)
    first = np.searchsorted(y, np.arange(C))
    return dict(loss=loss, objective=obj, norm_W=np.linalg.norm(W), norm_H=np.linalg.norm(H),
                norm_b=np.linalg.norm(b), b=b, WWt=W @ W.T, gram_mu=means.T @ means,
                logits=Z[:, first])


def ce_balanced_reference(C, n, lW, lH):
    """THEORY.md 1, written out again."""
    r, s = np.sqrt(n * lW * lH), np.sqrt(n * lH / lW)
    rho = (C - 1) / C * s * np.log((1 - (C - 1) * r) / r)
    loss = -np.log(1 - (C - 1) * r)
    k = np.sqrt(lW / (n * lH))
    return dict(loss=loss, objective=loss + lW * C * rho, norm_W=np.sqrt(C * rho),
                norm_H=np.sqrt(lW / lH * C * rho), logit_true=k * rho, logit_other=-k * rho / (C - 1))


def ce_trivial_threshold(counts, bias, lb):
    """sigma_max(Y - softmax(b0) 1^T) / N with b0 the CE bias at W = H = 0."""
    C, N = len(counts), sum(counts)
    Y, _ = onehot(counts)
    qhat = np.array(counts, float) / N
    b = np.zeros(C)
    if bias and lb == 0:
        b = np.log(qhat) - np.log(qhat).mean()
    elif bias:
        for _ in range(100):  # Newton on lse(b) - qhat.b + lb/2 |b|^2
            q = np.exp(b - b.max())
            q /= q.sum()
            g = q - qhat + lb * b
            Hs = np.diag(q) - np.outer(q, q) + lb * np.eye(C)
            b = b - np.linalg.solve(Hs, g)
    q = np.exp(b - b.max())
    q /= q.sum()
    return np.linalg.svd(Y - q[:, None], compute_uv=False)[0] / N


def load_tsv(path):
    return np.loadtxt(path, delimiter="\t", ndmin=2)


def formulas(ufm):
    lam = ["lambda_W=4.1e-3", "lambda_H=2.385e-3"]
    # balanced CE
    for C, n, lW, lH, extra in [(4, 5, 4.1e-3, 2.385e-3, ["bias=false"]), (10, 20, 5e-3, 5e-3, []),
                                (3, 7, 2.385e-3, 6.1e-3, ["lambda_b=1.3e-2"])]:
        args = ["classes=%d" % C, "dim=%d" % (C + 2), "n=%d" % n, "lambda_W=%r" % lW,
                "lambda_H=%r" % lH] + extra
        d, ref = theory(ufm, args), ce_balanced_reference(C, n, lW, lH)
        report(d["regime"] == "etf" and all(close(d[k], v, 1e-12) for k, v in ref.items()),
               "CE balanced %s: loss, objective, norms, logits = THEORY.md 1" % " ".join(args))
    # MSE, every closed-form case, matrices included
    cases = [
        ("balanced, no bias", [4, 4, 4, 4], 0, 0, 8),
        ("balanced, lambda_b = 0, p = C-1", [5] * 4, 1, 0, 3),
        ("balanced, lambda_b > 0 in range", [5] * 4, 1, 2.385e-2, 3),
        ("balanced, lambda_b = 0.2 (beyond the range at the small lambdas: derived)", [5] * 4, 1, 0.2, 8),
        ("imbalanced, no bias (Dang)", [9, 6, 4, 2], 0, 0, 6),
        ("imbalanced, lambda_b = 0", [9, 6, 4, 2], 1, 0, 3),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, counts, bias, lb, p in cases:
            for lW, lH in [(4.1e-3, 2.385e-3), (0.1, 0.064)]:
                args = ["loss=mse", "classes=%d" % len(counts), "dim=%d" % p,
                        "counts=" + ",".join(map(str, counts)), "bias=%s" % ("true" if bias else "false"),
                        "lambda_b=%r" % lb, "lambda_W=%r" % lW, "lambda_H=%r" % lH]
                out = os.path.join(tmp, "m")
                d, ref = theory(ufm, args, out), mse_reference(counts, lW, lH, bias, lb)
                if d["regime"] == "unknown":
                    report(False, "MSE %s (lambda_W %g): ufm says unknown" % (name, lW))
                    continue
                ok = all(close(d[k], ref[k], 1e-9, 1e-12) for k in
                         ["loss", "objective", "norm_W", "norm_H", "norm_b"])
                if not ok:
                    print("       " + ", ".join("%s %.15g vs %.15g" % (k, d[k], ref[k]) for k in
                                                ["loss", "objective", "norm_W", "norm_H", "norm_b"]))
                if bias:
                    ok = ok and all(close(d["b_%d" % c], ref["b"][c], 1e-9, 1e-12) for c in range(len(counts)))
                for f in ["WWt", "gram_mu", "logits"]:
                    M = load_tsv(os.path.join(out, f + ".tsv"))
                    ok = ok and np.allclose(M, ref[f], rtol=0, atol=1e-9 * max(1, np.abs(ref[f]).max()))
                report(ok, "MSE %s, lambda_W %g lambda_H %g (%s): values, b, W W^T, class-mean Gram, "
                       "logits = NumPy SVD of Y - b 1^T" % (name, lW, lH, d["regime"]))
        # SELI: ||Zhat||_* and W W^T from NumPy's SVD of the C x N matrix
        for counts in [[5, 5, 5, 5], [9, 6, 4, 2], [7, 7, 7, 1, 1]]:
            args = ["classes=%d" % len(counts), "dim=%d" % len(counts), "bias=false", "lambda_W=0",
                    "lambda_H=0", "counts=" + ",".join(map(str, counts))]
            out = os.path.join(tmp, "s")
            d = theory(ufm, args, out)
            Y, _ = onehot(counts)
            U, s, _ = np.linalg.svd(Y - 1.0 / len(counts), full_matrices=False)
            M = load_tsv(os.path.join(out, "WWt.tsv"))
            report(close(d["svm_value"], s.sum(), 1e-12) and close(d["nmargin"], 1 / s.sum(), 1e-12)
                   and np.allclose(M, (U * s) @ U.T, atol=1e-12 * s.max()),
                   "SELI counts %s: svm_value = ||Zhat||_* = %.12f, W W^T = U L U^T" % (counts, s.sum()))
    # the trivial-regime threshold of imbalanced CE (derived in src/theory.c)
    for counts, bias, lb in [([12, 12, 3, 3], False, 0), ([12, 12, 3, 3], True, 0), ([12, 12, 3, 3], True, 2.385e-2),
                             ([9, 6, 4, 2], False, 0), ([9, 6, 4, 2], True, 0), ([9, 6, 4, 2], True, 0.5)]:
        args = ["counts=" + ",".join(map(str, counts)), "dim=3", "bias=%s" % ("true" if bias else "false"),
                "lambda_b=%r" % lb]
        d = theory(ufm, args + lam)
        ref = ce_trivial_threshold(counts, bias, lb)
        report(close(d["trivial_threshold"], ref, 1e-10),
               "CE imbalanced %s: trivial_threshold %.12f = NumPy %.12f" % (" ".join(args), d["trivial_threshold"], ref))
        d = theory(ufm, args + ["lambda_W=%r" % (1.1 * ref * 1.7), "lambda_H=%r" % (1.1 * ref / 1.7)])
        report(d["regime"] == "trivial", "... at 1.1 x the threshold the regime is trivial")
    # minority collapse threshold: sqrt(n_B) / N
    d = theory(ufm, ["classes=6", "n=20", "imbalance=step", "ratio=5", "majority=2"] + lam)
    report(close(d["mc_threshold"], np.sqrt(4) / (2 * 20 + 4 * 4), 1e-15),
           "minority-collapse threshold sqrt(n_B)/N for counts 20,20,4,4,4,4")


# ---------------------------------------------------------------- minimisation

def minimise(loss, counts, p, lW, lH, lb, bias, lr, tol=1e-11, maxit=400000, seed=3):
    C, N = len(counts), sum(counts)
    Y, y = onehot(counts)
    rng = np.random.default_rng(seed)
    W, H, b = 0.1 * rng.standard_normal((C, p)), 0.1 * rng.standard_normal((p, N)), np.zeros(C)
    for t in range(maxit + 1):
        Z = W @ H + b[:, None]
        if loss == "ce":
            Zs = Z - Z.max(0)
            E = np.exp(Zs)
            S = E.sum(0)
            L = np.mean(np.log(S) - Zs[y, np.arange(N)])
            G = (E / S - Y) / N
        else:
            L = np.sum((Z - Y) ** 2) / (2 * N)
            G = (Z - Y) / N
        gW, gH = G @ H.T + lW * W, W.T @ G + lH * H
        gb = G.sum(1) + lb * b if bias else np.zeros(C)
        gn = np.sqrt(np.sum(gW ** 2) + np.sum(gH ** 2) + np.sum(gb ** 2))
        if gn <= tol:
            break
        W, H, b = W - lr * gW, H - lr * gH, b - lr * gb
    F = L + lW / 2 * np.sum(W * W) + lH / 2 * np.sum(H * H) + lb / 2 * np.sum(b * b)
    return dict(loss=L, objective=F, norm_W=np.linalg.norm(W), norm_H=np.linalg.norm(H),
                norm_b=np.linalg.norm(b)), t, gn


def minimisation(ufm):
    cases = [
        ("CE balanced, lambda_b > 0", "ce", [5] * 4, 6, 4.1e-3, 2.385e-3, 3.3e-3, True, 1.0),
        ("CE balanced, no bias, lambda_H > lambda_W", "ce", [6] * 3, 2, 2.385e-3, 6.1e-3, 0, False, 1.0),
        ("CE imbalanced trivial, lambda_b > 0 (derived)", "ce", [12, 12, 3, 3], 3, 0.5, 0.2, 2.385e-2, True, 0.5),
        ("MSE imbalanced, lambda_b = 0", "mse", [9, 6, 4, 2], 4, 4.1e-3, 2.385e-3, 0, True, 0.8),
        ("MSE Dang, a dead class", "mse", [9, 6, 4, 2], 6, 0.1, 0.064, 0, False, 0.5),
        ("MSE balanced, lambda_b > 0 beyond (derived)", "mse", [5] * 4, 6, 4.1e-3, 2.385e-3, 0.2, True, 1.0),
    ]
    for name, loss, counts, p, lW, lH, lb, bias, lr in cases:
        args = ["loss=" + loss, "classes=%d" % len(counts), "dim=%d" % p, "counts=" + ",".join(map(str, counts)),
                "lambda_W=%r" % lW, "lambda_H=%r" % lH, "lambda_b=%r" % lb, "bias=%s" % ("true" if bias else "false")]
        d = theory(ufm, args)
        got, t, gn = minimise(loss, counts, p, lW, lH, lb, bias, lr)
        dev = max(abs(got[k] - d[k]) / max(abs(d[k]), 1e-300 if d[k] else 1.0)
                  for k in ["loss", "objective", "norm_W", "norm_H", "norm_b"])
        report(gn <= 1e-11 and dev <= 1e-6,
               "%s: NumPy GD %d steps (|grad| %.1e): F %.12f vs ufm theory %.12f, max rel dev %.1e"
               % (name, t, gn, got["objective"], d["objective"], dev))


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("formulas", "minimise"):
        raise SystemExit(__doc__)
    (formulas if sys.argv[1] == "formulas" else minimisation)(sys.argv[2])
    print("theory_reference %s: %d failed" % (sys.argv[1], len(FAILS)))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
