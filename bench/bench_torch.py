#!/usr/bin/python3
"""bench_torch.py -- the UFM gradient-descent step written plainly in PyTorch, timed.

  bench_torch.py C p n reps target threads lr lambda_W lambda_H lambda_b [STEPS]

The objective of SPEC section 1 in float64 (cross_entropy on the logits plus
the three weight-decay terms), its gradient by autograd, the update by
torch.optim.SGD: the way a PyTorch user writes the UFM. Prints
`best SECONDS`: the best over `reps` samples of about `target` seconds each
of the time per step. With STEPS, takes exactly that many steps from the
initial state and prints `done LOSS` instead: the program ufm-bench times
whole, start to exit, beside a whole `ufm run`.
"""
import sys
import time
import torch


def main():
    C, p, n, reps = (int(a) for a in sys.argv[1:5])
    target = float(sys.argv[5])
    threads = int(sys.argv[6])
    lr, lW, lH, lb = (float(a) for a in sys.argv[7:11])
    torch.set_num_threads(threads)
    N = C * n
    g = torch.Generator().manual_seed(1)
    W = (0.1 * torch.randn(C, p, generator=g, dtype=torch.float64)).requires_grad_()
    H = (0.1 * torch.randn(p, N, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    y = torch.arange(C).repeat_interleave(n)
    opt = torch.optim.SGD([W, H, b], lr=lr)

    def step():
        opt.zero_grad()
        Z = W @ H + b[:, None]
        loss = torch.nn.functional.cross_entropy(Z.T, y)
        obj = loss + 0.5 * (lW * (W * W).sum() + lH * (H * H).sum() + lb * (b * b).sum())
        obj.backward()
        opt.step()
        return loss.item()

    if len(sys.argv) > 11:
        loss = 0.0
        for _ in range(int(sys.argv[11])):
            loss = step()
        print(f"done {loss:.17g}")
        return
    t = time.perf_counter()
    step()
    one = max(time.perf_counter() - t, 1e-7)
    k = max(1, int(target / one))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(k):
            step()
        best = min(best, (time.perf_counter() - t) / k)
    print(f"best {best:.9g}")


if __name__ == "__main__":
    main()
