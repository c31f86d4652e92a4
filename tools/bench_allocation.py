"""Bits where the model needs them, on MiniLM: a global size target against per-tensor budgets.

For each size (the bytes ``dcpack --max-error E`` gives MiniLM's 39 matrices, E in :data:`TARGETS`),
the same bytes are shared out across the matrices by :mod:`dcformat.pack.allocate` under several
weightings, and each result is scored by MiniLM's sentence-embedding cosine to the original
(:func:`dcformat.demo.make_evaluator`, the demo's 24 sentences; the calibration uses 8 others):

- ``per-tensor budgets``: ``dcpack --max-error E`` itself;
- ``no data``: ``dcpack --target-size`` without ``--sensitivity`` (squared relative error, token
  embedding tables weighted 0.1);
- ``calibrated, per tensor``: each tensor's mean Fisher sensitivity times its squared error;
- ``calibrated, per weight``: ``Σ h_i (w_i − ŵ_i)²`` over the search's encodings (what ``dcpack
  --target-size --sensitivity`` does with a per-weight file);
- ``... + weighted codebooks``: the same with sensitivity-weighted k-means and grid candidates
  (:mod:`dcformat.compress.weighted`) among the points.

Each row also says how many matrices are pruned. Measured (the whole run 2185 s at load 11 on two
cores; cosine / Fisher-weighted error Σ h δ² / pruned matrices):

====================================  =========================  =========================
allocation                            size of --max-error 0.02   size of --max-error 0.05
====================================  =========================  =========================
per-tensor budgets                    0.9983 / 0.00338 / 0       0.9899 / 0.0209 / 0
no data                               0.9992 / 0.00164 / 0       0.9946 / 0.0105 / 0
calibrated, per tensor                0.9996 / 0.000829 / 1      0.9973 / 0.00529 / 1
calibrated, per weight                0.9996 / 0.000829 / 1      0.9973 / 0.00529 / 1
... + weighted codebooks              0.9996 / 0.000812 / 1      0.9974 / 0.00519 / 1
====================================  =========================  =========================

Weighted k-means and grid candidates win most matrices (38 and 35 of 39 picks) but lower the
weighted error by only 2%, likely because the Fisher diagonal varies with a weight's row and column
more than with its value, so within a 1-D codebook it moves the centroids little. ECVQ (:func:`ecvq_rows`)
never beat the uniform grid at equal error: on three MiniLM matrices at budgets 0.02 and 0.05 it
took 0.06–0.48% more bytes at an error no larger than the grid's. :func:`ecvq_rows` compares ECVQ with the uniform
grid at equal error on a few matrices. Run: ``.venv/bin/python tools/bench_allocation.py`` (about
ten minutes on two cores); :func:`run` returns the rows for another table (``tools/bench_fidelity.py``).
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

TARGETS = (0.02, 0.05)
TOOLS = os.path.dirname(os.path.abspath(__file__))
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)
from bench_fidelity import CALIBRATION  # noqa: E402 - 8 texts, none among the evaluation sentences
ECVQ_TENSORS = ("encoder.layer.0.attention.self.query.weight", "encoder.layer.0.intermediate.dense.weight",
                "encoder.layer.3.output.dense.weight")


@dataclass(frozen=True)
class Weighted:
    """A sensitivity-weighted candidate: ``kind`` "k-means" (``param`` = k) or "grid" (``param`` = step)."""

    kind: str
    param: float
    sparsity = None
    lossless = False

    def describe(self) -> str:
        return f"weighted {self.kind} {self.param:g}"

    def build(self, array, h):
        from dcformat.compress.weighted import weighted_grid, weighted_kmeans

        return weighted_kmeans(array, h, int(self.param)) if self.kind == "k-means" else weighted_grid(array, h, self.param)


def weighted_extra(array, h, grid_steps):
    out = []
    for bits in range(2, 13):
        c = Weighted("k-means", 2 ** bits)
        out.append((c, c.build(array, h)))
    for step in grid_steps:
        c = Weighted("grid", step)
        out.append((c, c.build(array, h)))
    return out


def _decoded(array, policy, h):
    from dcformat.pack.packer import compress_tensor, reconstruction

    if isinstance(policy, Weighted):
        return policy.build(array, h).decode()
    return reconstruction(compress_tensor(array, policy)[0])


BUDGETS = tuple(float(f"{0.003 * 1.6 ** i:.3g}") for i in range(11))
"""Where the grid candidate's rungs are measured here (0.003 to about 0.33; dcpack measures more)."""


def run(out=sys.stdout, with_ecvq: bool = True, threads: int = 2) -> list[dict]:
    import dcformat.demo as demo
    from dcformat.pack import budget_recipe, load_checkpoint
    from dcformat.pack.allocate import allocate_curves, pareto, tensor_points
    from dcformat.pack.sweep import budget_sweep
    from dcformat.pack.target import EMBEDDING_WEIGHT, is_embedding
    from dcformat.torch.calibrate import calibrate_texts

    start = time.perf_counter()
    model_dir = demo.minilm_dir()
    tensors, _ = load_checkpoint(os.path.join(model_dir, "model.safetensors"))
    recipe = budget_recipe(0.01)
    searched = [n for n, a in tensors.items() if recipe.rule_for(n, a) is not None]
    evaluate = demo.make_evaluator(model_dir, tensors)
    sens = calibrate_texts(model_dir, CALIBRATION, probes=4)
    norm2 = {n: float(np.square(tensors[n].astype(np.float64)).sum()) for n in searched}
    mean_h = {n: float(sens[n].astype(np.float64).mean()) for n in searched}
    sweep = budget_sweep(tensors, TARGETS)
    from dcformat.parallel import imap_ordered

    def measure(n):
        pts = tensor_points(tensors[n], sens[n], budgets=BUDGETS, frontier_only=False)
        steps = sorted({p.policy.step for p in pts if getattr(p.policy, "step", None)})
        more = tensor_points(tensors[n], sens[n], budgets=(), extra=weighted_extra(tensors[n], sens[n], steps),
                             frontier_only=False)
        return n, pts, [p for p in more if isinstance(p.policy, Weighted)]

    base, extra = {}, {}
    sizes = [int(tensors[n].size) for n in searched]
    for n, pts, more in imap_ordered(measure, searched, sizes, threads, limit=1.5 * max(sizes)):
        base[n], extra[n] = pts, more
    print(f"(points measured: {time.perf_counter() - start:.0f} s)", file=out)

    def curves_of(kind):
        curves, pts = {}, {}
        for n in searched:
            if kind == "no data":
                rho = EMBEDDING_WEIGHT if is_embedding(n) else 1.0
                cand = [p.__class__(p.policy, p.bytes, p.error, rho * p.error ** 2) for p in base[n]]
            elif kind == "calibrated, per tensor":
                cand = [p.__class__(p.policy, p.bytes, p.error, mean_h[n] * p.error ** 2 * norm2[n]) for p in base[n]]
            elif kind == "calibrated, per weight":
                cand = list(base[n])
            else:
                cand = list(base[n]) + extra[n]
            pts[n] = pareto(cand)
            curves[n] = [(p.bytes, p.distortion) for p in pts[n]]
        return curves, pts

    rows = []

    def score(label, budget, picks, size):
        decoded = {n: _decoded(tensors[n], picks[n][0], sens[n]) for n in searched}
        scores = evaluate(decoded) if evaluate is not None else {}
        err2 = sum(np.square(decoded[n].astype(np.float64) - tensors[n]).sum() for n in searched)
        fisher = sum(float(np.dot(np.square(decoded[n].astype(np.float64) - tensors[n]).reshape(-1),
                                  sens[n].astype(np.float64).reshape(-1))) for n in searched)
        row = {"size of": budget, "allocation": label, "bytes": size, "cosine": scores.get("cosine"),
               "paraphrase": scores.get("paraphrase@1"), "weight error": math.sqrt(err2 / sum(norm2.values())),
               "fisher": fisher, "pruned": sum(1 for p, _ in picks.values() if getattr(p, "sparsity", None)),
               "weighted picks": sum(1 for p, _ in picks.values() if isinstance(p, Weighted))}
        rows.append(row)
        print(f"| {budget:g} | {label} | {size:,} | {row['cosine']:.4f} | {row['paraphrase']:.2f} | "
              f"{row['weight error']:.4f} | {fisher:.4g} | {row['pruned']} | {row['weighted picks']} |", file=out)
        out.flush()

    print("\n| size of --max-error | allocation | matrix bytes | cosine | paraphrase@1 | weight error | "
          "Fisher-weighted error | pruned | weighted picks |\n|---|---|---:|---:|---:|---:|---:|---:|---:|", file=out)
    kinds = ("no data", "calibrated, per tensor", "calibrated, per weight", "calibrated, per weight + weighted codebooks")
    for budget in TARGETS:
        i = sweep.budgets.index(budget)
        target = sum(sweep.outcomes[n][i].bytes for n in searched)
        score("per-tensor budgets", budget, {n: (sweep.outcomes[n][i].policy, None) for n in searched}, target)
        for kind in kinds:
            curves, pts = curves_of(kind)
            picks = allocate_curves(curves, target)
            chosen = {n: (pts[n][j].policy, pts[n][j]) for n, j in picks.items()}
            score(kind, budget, chosen, sum(pts[n][j].bytes for n, j in picks.items()))
    if with_ecvq:
        rows += ecvq_rows(tensors, out)
    print(f"\n({time.perf_counter() - start:.0f} s)", file=out)
    return rows


def ecvq_rows(tensors, out=sys.stdout, budgets=(0.02, 0.05, 0.1)) -> list[dict]:
    """Per matrix of :data:`ECVQ_TENSORS` and budget: ECVQ's bytes (its λ bisected toward the grid's
    error at the budget, from below) against the uniform grid's at ECVQ's error (the search's own
    rung), both as the writer stores them."""
    from dcformat.compress import relative_error
    from dcformat.compress.weighted import ecvq, ecvq_lambda
    from dcformat.encoding import encode_tensor
    from dcformat.pack.budget import TensorSearch, _measure_grid, encoded_bytes

    rows = []
    print("\n| matrix | budget | grid bytes | grid error | ECVQ bytes | ECVQ error | ECVQ codewords | ECVQ / grid |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|", file=out)
    for name in ECVQ_TENSORS:
        w = tensors[name]
        ts = TensorSearch(w)
        for budget in budgets:
            policy, _, _, g_err, g_bytes = _measure_grid(ts, budget)
            step = policy.step
            lo, hi = math.log(ecvq_lambda(step) / 64), math.log(ecvq_lambda(step) * 64)
            best = None
            for _ in range(20):
                lam = math.exp(0.5 * (lo + hi))
                c = ecvq(w, lam=lam, init_step=step / 2, iters=40)
                err = relative_error(w, c.decode())
                if err <= g_err:
                    lo = math.log(lam)
                    size = encoded_bytes(encode_tensor(c))
                    if best is None or size < best[0]:
                        best = (size, err, c.codebook.size)
                    if err > 0.995 * g_err:
                        break
                else:
                    hi = math.log(lam)
            if best is not None and best[1] < 0.995 * g_err:  # compare at ECVQ's own error: the grid's rung there
                _, _, _, g_err, g_bytes = _measure_grid(ts, best[1])
            row = {"matrix": name, "budget": budget, "grid bytes": g_bytes, "grid error": g_err,
                   "ecvq bytes": best[0] if best else None, "ecvq error": best[1] if best else None,
                   "codewords": best[2] if best else None}
            rows.append(row)
            got = f"{best[0]:,} | {best[1]:.4f} | {best[2]} | {best[0] / g_bytes:.4f}" if best else "| | |"
            print(f"| {name} | {budget:g} | {g_bytes:,} | {g_err:.4f} | {got} |", file=out)
            out.flush()
    return rows


if __name__ == "__main__":
    run(with_ecvq="--no-ecvq" not in sys.argv)
