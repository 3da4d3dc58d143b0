#!/usr/bin/python3
"""bench_numpy.py -- the UFM gradient-descent step written plainly in NumPy, timed.

  bench_numpy.py C p n reps target threads lr lambda_W lambda_H lambda_b [STEPS]

One step of CE with bias and weight decay on float64, gradient by hand (the
formulas of SPEC section 1), the loss computed as ufm computes it at every
step. Prints `best SECONDS`: the best over `reps` samples of about `target`
seconds each of the time per step. Threads are set by the caller through
OPENBLAS_NUM_THREADS (NumPy's matrix products are OpenBLAS's).
"""
import sys
import time
import numpy as np


def main():
    C, p, n, reps = (int(a) for a in sys.argv[1:5])
    target = float(sys.argv[5])
    lr, lW, lH, lb = (float(a) for a in sys.argv[7:11])
    N = C * n
    rng = np.random.default_rng(1)
    W = 0.1 * rng.standard_normal((C, p))
    H = 0.1 * rng.standard_normal((p, N))
    b = np.zeros(C)
    y = np.repeat(np.arange(C), n)
    cols = np.arange(N)

    def step(W, H, b):
        Z = W @ H + b[:, None]
        m = Z.max(axis=0)
        E = np.exp(Z - m)
        S = E.sum(axis=0)
        loss = np.mean(np.log(S) + m - Z[y, cols])
        G = E / S
        G[y, cols] -= 1.0
        G /= N
        gW = G @ H.T + lW * W
        gH = W.T @ G + lH * H
        gb = G.sum(axis=1) + lb * b
        W -= lr * gW
        H -= lr * gH
        b -= lr * gb
        return loss

    if len(sys.argv) > 11:
        loss = 0.0
        for _ in range(int(sys.argv[11])):
            loss = step(W, H, b)
        print(f"done {loss:.17g}")
        return
    t = time.perf_counter()
    step(W, H, b)
    one = max(time.perf_counter() - t, 1e-7)
    k = max(1, int(target / one))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(k):
            step(W, H, b)
        best = min(best, (time.perf_counter() - t) / k)
    print(f"best {best:.9g}")


if __name__ == "__main__":
    main()
