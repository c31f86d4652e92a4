from __future__ import annotations

from ..pack import facts as _facts

_DOC = """dcpack: compress a checkpoint into a dcf file (prune, share, entropy code).

    dcpack model.safetensors              lossless, to model.dcf; every tensor bit-exact
    dcpack a.safetensors b.pt             a.dcf and b.dcf
    dcpack - -o model.dcf < model.safetensors       safetensors from stdin
    dcpack model.safetensors --preset safe          {safe}, outputs kept (no retraining)
    dcpack model.safetensors --max-error 0.05       per layer the smallest within 5%
    dcpack model/ --target-size 12MB --sensitivity s.safetensors
                                          12 MB, bits where calibration says they matter
    dcpack model.safetensors --sparsity 0.9 --bits 5    the paper's: needs retraining
    dcpack model.pt --sparsity 0.9 --conv-sparsity 0.65 --bits 5 --conv-bits 8
    dcpack model.npz --recipe recipe.json --table md    a JSON recipe (README: "Recipes")

Inputs, judged by content (any suffix): safetensors, torch files (torch.load with
weights_only=True; a training checkpoint gives every tensor under dotted names, its
other entries kept in the metadata, --key one subtree), npz (no pickles), dcf, a
Hugging Face model folder or its *.index.json (shards), an ONNX model (its
initializers; the graph kept inside: dcunpack -o X.onnx). Fully connected weights
are the floating-point tensors of rank 2 (embedding tables included) and conv
weights those of rank 3 or more; tensors under --min-size elements, biases and
norms (rank 1) and non-float tensors stay raw and lossless. The recipe and the
source file name are stored in the file's metadata (``dcformat.recipe``,
``dcformat.source``). An existing output is kept unless -f/--force is given. User
errors print one line naming the file and exit with status 1 (2 for bad usage, such
as a --keep pattern that matches no tensor; 130 after Ctrl-C, which leaves no
partial file).

Lossy settings report the relative error ||W - W'|| / ||W|| they cause
(largest and median per tensor, overall) and warn when a tensor's passes
{warn:g}; --table md lists every tensor's.

Presets (--preset), measured on {measured_on}:

  lossless    the default: every tensor bit-exact; floats stored as entropy-
              coded byte planes (ZipNN's method): {lossless} smaller than float32.
  safe        weight sharing, no pruning: per tensor the smallest codebook
              (k-means bits ({unpruned_bits}) or a uniform grid) whose relative
              error stays within {safe_error:g} (token embedding tables: {safe_embedding:g};
              --max-error sets one for all): {safe} smaller; sentence
              embeddings keep cosine {cosine:g} to the original and the same
              paraphrase matches. No retraining needed.
  indistinguishable
              the same within {ind_error:g} (embedding tables {ind_embedding:g}): {ind} smaller,
              embeddings at cosine {ind_cosine:g} (at least 0.999).
  aggressive  Deep Compression's settings: fully connected 90% pruned + 5-bit
              codebooks, conv 65% + 8 bits: {aggressive} smaller, but without
              retraining the outputs are destroyed (relative error ~{aggressive_error:g} per
              matrix); retrain with dcformat.torch (masked fine-tuning) first.

--max-error E (without --preset): per tensor the encoding with the fewest bytes
whose relative error is at most E, searched over raw storage, pruning
{percents} with {pruned_bits}-bit codebooks, and unpruned {unpruned_bits}-bit
codebooks; a looser budget never gives a larger file.

--target-size SIZE: the file within SIZE bytes (12MB, 5MiB, or Nx: N times
smaller), its bytes shared out across tensors by the model's cost of their
errors: every encoding the --max-error search can store (pruning, codebooks,
the uniform grid at many steps) is measured per tensor, and the set of picks
with the least total cost that fits is chosen (an exact knapsack). The cost is
the squared relative error (token embedding tables weighted {emb_weight:g}) without
data, or with --sensitivity FILE the model's own: sum of h_i (w_i - w'_i)^2, h
from a few calibration texts (python -m dcformat.torch.sensitivity --model
FOLDER --texts FILE -o FILE). Pruning is picked only where it costs the model
less per byte. A SIZE below the smallest reachable file is refused (exit 2)
with that size.

--bits B: a codebook of 2^B symbols, the zero of pruned weights included
(2^B - 1 centroids and zero when the layer is pruned, 2^B centroids when
nothing is).
"""


def _doc_facts(ascii: bool = True) -> dict:
    return {
        "safe": _facts.times(_facts.SAFE_RATIO, ascii), "lossless": _facts.times(_facts.LOSSLESS_RATIO, ascii),
        "aggressive": _facts.times(_facts.AGGRESSIVE_RATIO, ascii), "aggressive_error": _facts.AGGRESSIVE_ERROR,
        "cosine": _facts.SAFE_COSINE, "safe_error": _facts.SAFE_MAX_ERROR, "warn": _facts.WARN_ERROR,
        "safe_embedding": _facts.SAFE_EMBEDDING_ERROR, "ind": _facts.times(_facts.INDISTINGUISHABLE_RATIO, ascii),
        "ind_error": _facts.INDISTINGUISHABLE_MAX_ERROR, "ind_embedding": _facts.INDISTINGUISHABLE_EMBEDDING_ERROR,
        "ind_cosine": _facts.INDISTINGUISHABLE_COSINE,
        "measured_on": _facts.MEASURED_ON, "percents": _facts.percents(_facts.SEARCH_SPARSITIES),
        "pruned_bits": _facts.bit_range(_facts.PRUNED_BITS, ".."),
        "unpruned_bits": _facts.bit_range(_facts.UNPRUNED_BITS, ".."),
        "emb_weight": _embedding_weight(),
    }


def _embedding_weight() -> float:
    from ..pack.target import EMBEDDING_WEIGHT

    return EMBEDDING_WEIGHT


__doc__ = _DOC.format(**_doc_facts())

import argparse
import sys

from ..report import sanitize
from ._common import (  # noqa: F401 - OneLineParser and run: dctable and dcunpack imported them from here
    KERNEL_MODULES,
    OneLineParser,
    UsageError,
    check_overwrite,
    each,
    note_first_compile,
    plural,
    replace_suffix,
    run,
    say,
)

INPUT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz", ".onnx")
"""Suffixes replaced by ``.dcf`` to name the default output."""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _bits(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError(f"must be 1..16, got {value}")
    return value


def _index_bits(text: str):
    if text in ("auto", "paper"):
        return text
    try:
        return _bits(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be auto, paper or 1..16, got {text!r}") from None


def _nonnegative(text: str):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _size(text: str):
    from ..pack.target import parse_size

    try:
        parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that describe a recipe (shared by dcpack and dctable --stages)."""
    prune = parser.add_argument_group("pruning (fully connected = rank-2 weights incl. embeddings; conv = rank >= 3)")
    prune.add_argument("--sparsity", type=_fraction, metavar="S",
                       help="prune the fraction S of smallest |w| of every fully connected layer (0.9: keep 10%%)")
    prune.add_argument("--conv-sparsity", type=_fraction, metavar="S",
                       help="the same for conv layers (default: --sparsity)")
    prune.add_argument("--quality", type=_nonnegative, metavar="Q",
                       help="prune |w| < Q x std(w) instead of a ratio (Deep Compression's Caffe rule)")
    prune.add_argument("--per-filter", action="store_true", help="prune every output row/filter to the same ratio")
    prune.add_argument("--global", dest="global_", action="store_true",
                       help="one magnitude threshold over all pruned layers (of equal sparsity), not one per layer")
    share = parser.add_argument_group("weight sharing")
    share.add_argument("--bits", type=_bits, metavar="B",
                       help="k-means codebook of 2^B symbols for fully connected layers, the zero of pruned "
                            "weights included (2^B centroids when nothing is pruned)")
    share.add_argument("--conv-bits", type=_bits, metavar="B", help="the same for conv layers (default: --bits)")
    share.add_argument("--init", choices=("linear", "density", "random"), default="linear",
                       help="k-means initialisation (default: linear, the paper's best)")
    share.add_argument("--pow2", action="store_true", help="power-of-two codebook (INQ levels) instead of k-means")
    share.add_argument("--float16", action="store_true",
                       help="store every other floating-point tensor as float16 values (lossy; default: raw)")
    share.add_argument("--codebook-float16", action="store_true", help="store codebooks as float16")
    store = parser.add_argument_group("selection and storage")
    store.add_argument("--index-bits", type=_index_bits, default="auto", metavar="{auto,paper,1..16}",
                       help="CSR relative-index width: auto (fewest bytes, the default), "
                            "paper (5 fc, 8 conv), or fixed")
    store.add_argument("--min-size", type=int, default=4096, metavar="N",
                       help="tensors with fewer elements stay raw (default: 4096)")
    store.add_argument("--keep", action="append", default=[], metavar="PATTERN",
                       help="tensors whose name matches stay raw and lossless (shell pattern; repeatable)")
    store.add_argument("--only", action="append", default=[], metavar="PATTERN",
                       help="put only the tensors whose name matches into the file (repeatable)")
    store.add_argument("--recipe", metavar="FILE",
                       help="a JSON recipe, or a .dcf file whose recipe to reuse (replaces the flags above)")


def add_preset_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("presets and error budgets (instead of the pruning and sharing flags)")
    group.add_argument("--preset", choices=("lossless", "safe", "indistinguishable", "aggressive"),
                       help=f"lossless (default): bit-exact, {_facts.times(_facts.LOSSLESS_RATIO, True)}; "
                            f"safe: per-layer codebooks within a {_facts.SAFE_MAX_ERROR:g} relative error, "
                            f"{_facts.times(_facts.SAFE_RATIO, True)}, outputs kept; indistinguishable: "
                            f"embedding cosine >= 0.999, {_facts.times(_facts.INDISTINGUISHABLE_RATIO, True)}; aggressive: the paper's "
                            f"90%%/5-bit pruning + sharing, {_facts.times(_facts.AGGRESSIVE_RATIO, True)}, "
                            "needs retraining (see below)")
    group.add_argument("--max-error", type=_nonnegative, metavar="E",
                       help="per layer the smallest encoding (pruning, codebook bits, raw) whose relative "
                            "error ||W - W'|| / ||W|| is at most E; with --preset safe: its budget")
    group.add_argument("--target-size", type=_size, metavar="SIZE",
                       help="the file within SIZE (bytes, 12MB, 5MiB, or Nx: N times smaller), its bits shared "
                            "out across tensors where the model needs them (see below)")
    group.add_argument("--sensitivity", metavar="FILE",
                       help="with --target-size: per-weight or per-tensor sensitivities (python -m "
                            "dcformat.torch.sensitivity writes them from a few calibration texts)")


RECIPE_FLAGS = ("sparsity", "conv_sparsity", "quality", "per_filter", "global_", "bits", "conv_bits", "pow2", "float16",
                "codebook_float16", "keep")


def recipe_from_args(args):
    from ..pack.errors import RecipeError
    from ..pack.recipe import Recipe, budget_recipe, preset_recipe

    preset = getattr(args, "preset", None)
    max_error = getattr(args, "max_error", None)
    if preset is not None or max_error is not None:
        given = [f"--{name.rstrip('_').replace('_', '-')}" for name in RECIPE_FLAGS if name != "keep" and getattr(args, name)]
        if args.recipe:
            given.append("--recipe")
        if args.index_bits != "auto":
            given.append("--index-bits")
        if args.init != "linear":
            given.append("--init")
        if given:
            what = f"--preset {preset}" if preset else "--max-error"
            raise UsageError(f"{what} replaces the pruning and sharing flags; drop {', '.join(given)}")
        if args.min_size < 0:
            raise UsageError("--min-size must be >= 0")
        common = dict(only=args.only, keep=args.keep, min_size=args.min_size)
        if preset is None:
            return budget_recipe(max_error, **common)
        try:
            return preset_recipe(preset, max_error=max_error, **common)
        except RecipeError as exc:  # flags that do not go together
            raise UsageError(str(exc)) from None

    if args.recipe:
        given = [f"--{name.rstrip('_').replace('_', '-')}" for name in RECIPE_FLAGS if getattr(args, name)]
        if given or args.index_bits != "auto" or args.init != "linear" or args.min_size != 4096:
            raise UsageError(f"--recipe replaces the recipe flags; drop {', '.join(given) or 'the recipe flags'}")
        recipe = Recipe.from_file(args.recipe)
        if args.only:
            recipe = Recipe(recipe.rules, tuple(args.only))
        return recipe
    if args.min_size < 0:
        raise UsageError("--min-size must be >= 0")
    return Recipe.from_flags(
        sparsity=args.sparsity, conv_sparsity=args.conv_sparsity, quality=args.quality, per_filter=args.per_filter,
        global_=args.global_, bits=args.bits, conv_bits=args.conv_bits, pow2=args.pow2, init=args.init,
        index_bits=args.index_bits, min_size=args.min_size, keep=args.keep, only=args.only, float16=args.float16,
        codebook_dtype="float16" if args.codebook_float16 else "float32",
    )


def _metadata(pairs) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata wants KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def report_errors(tensors, recipe, *, quiet: bool = False, out=None, advice: str | None = None) -> float:
    """The relative error ``||W - W'|| / ||W||`` the lossy tensors got: one line (largest, median,
    overall), and a warning when the largest passes ``facts.WARN_ERROR`` (printed even when quiet).
    Returns the largest error (0 when every tensor is lossless)."""
    out = out or sys.stderr
    lossy = sorted((t for t in tensors if not t.lossless), key=lambda t: -t.relative_error)
    if not lossy:
        return 0.0
    errors = [t.relative_error for t in lossy]
    median = sorted(errors)[len(errors) // 2]
    weights = [t.parameters for t in lossy]
    overall = (sum(w * e * e for w, e in zip(weights, errors)) / max(1, sum(weights))) ** 0.5
    worst = lossy[0]
    if not quiet:
        say("dcpack", f"relative error ||W - W'|| / ||W|| of the {plural(len(lossy), 'lossy tensor')}: largest "
            f"{worst.relative_error:.3g} ({sanitize(worst.name, 60)}), median {median:.3g}, overall {overall:.3g} "
            "(weighted by parameters); --table md lists every tensor's", out)
    over = [t for t in lossy if t.relative_error > _facts.WARN_ERROR]
    if over:
        others = f" and {len(over) - 1} other tensor{'s' if len(over) > 2 else ''}" if len(over) > 1 else ""
        keep = ("retrain it with dcformat.torch (masked fine-tuning, then codebook fine-tuning), or "
                f"use --preset safe (every tensor within {_facts.SAFE_MAX_ERROR:g}) to keep the model")
        if recipe.preset == "safe" or any(r.policy.max_error is not None for r in recipe.rules):
            keep = "a smaller --max-error keeps the model closer"
        keep = advice or keep
        say("dcpack", f"warning: {sanitize(worst.name, 60)}{others} changed by more than {_facts.WARN_ERROR:g} "
            f"(largest relative error {worst.relative_error:.3g}): the model's outputs will likely change badly; "
            f"{keep}", out)
    return worst.relative_error


TARGET_FLAGS = ("preset", "max_error", "recipe", "sparsity", "conv_sparsity", "quality", "per_filter", "global_",
                "bits", "conv_bits", "pow2", "float16", "codebook_float16")


def pack_target(args, source, output) -> None:
    """``dcpack --target-size SIZE [--sensitivity FILE]``: :func:`dcformat.pack.target.pack_to_size`."""
    from ..pack.target import TargetTooSmall, pack_to_size

    given = [f"--{n.rstrip('_').replace('_', '-')}" for n in TARGET_FLAGS if getattr(args, n, None)]
    given += ["--index-bits"] if args.index_bits != "auto" else []
    given += ["--init"] if args.init != "linear" else []
    if given:
        raise UsageError(f"--target-size chooses pruning and sharing itself; drop {', '.join(given)}")
    if args.min_size < 0:
        raise UsageError("--min-size must be >= 0")
    if source == "-":
        raise UsageError("--target-size needs a checkpoint file or folder, not stdin")
    check_overwrite(output, args.force, [source])
    note_first_compile("dcpack", KERNEL_MODULES + ("kmeans",), args.quiet)
    try:
        result, plan = pack_to_size(source, output, args.target_size, sensitivity=args.sensitivity, only=args.only,
                                    keep=args.keep, min_size=args.min_size, progress=not args.quiet,
                                    verify=not args.no_verify, profile=args.profile, key=args.key,
                                    attach=args.attach, metadata=_metadata(args.metadata))
    except TargetTooSmall as exc:  # the command line asked for the impossible: a usage error (exit 2)
        raise UsageError(str(exc)) from None
    if not args.quiet:
        say("dcpack", f"{sanitize(source, 10**6)} -> {sanitize(output, 10**6)} (target size {plan.target_bytes:,} bytes)")
        say("dcpack", result.summary())
        say("dcpack", f"{result.file_bytes:,} bytes, {100 * result.file_bytes / plan.target_bytes:.1f}% of the target "
            f"(smallest reachable {plan.smallest_bytes:,}); {plural(len(plan.picks), 'tensor')} allocated "
            f"{plan.weighting}; {plan.pruned} of them pruned")
    report_errors(result.tensors, result.recipe, quiet=args.quiet,
                  advice="a larger --target-size keeps the model closer" + (
                      "" if args.sensitivity else "; --sensitivity puts the bytes where the model needs them"))
    for line in result.warnings:
        say("dcpack", f"warning: {sanitize(line, 2000)}")
    for line in [] if args.quiet else plan.notes + result.notes:
        say("dcpack", f"note: {sanitize(line, 2000)}")
    if args.table:
        from ..pack.tables import layer_table

        sys.stdout.write(layer_table(output, result.tensors).render(args.table))


def output_names(inputs, output) -> list[tuple[str, str]]:
    """``(input, output)`` pairs: ``-o`` for a single input, else each input's name with ``.dcf``."""
    if output is not None and len(inputs) > 1:
        raise UsageError("-o names one output: give one input, or leave -o out (each INPUT gets INPUT.dcf)")
    if "-" in inputs and output is None:
        raise UsageError("reading stdin (-) needs -o OUT.dcf")
    jobs = []
    for source in inputs:
        target = output if output is not None else replace_suffix(source.rstrip("/") or source, INPUT_SUFFIXES, ".dcf")
        if not target.lower().endswith(".dcf"):
            raise UsageError(f"the output should end in .dcf, got {target!r}")
        jobs.append((source, target))
    targets = [t for _, t in jobs]
    if len(set(targets)) != len(targets):
        raise UsageError("two inputs would write the same output file; pack them one at a time with -o")
    return jobs


def read_stdin_checkpoint() -> dict:
    """The tensors of a safetensors file read from stdin."""
    from ..pack.errors import CheckpointError

    data = sys.stdin.buffer.read()
    try:
        import ml_dtypes  # noqa: F401 - numpy's bfloat16 and float8 types
        from safetensors.numpy import load

        return load(data)
    except Exception as exc:  # the package raises SafetensorError, TypeError...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"<stdin>: not a readable safetensors stream ({first})") from None


def main(argv=None) -> int:
    parser = OneLineParser(prog="dcpack", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=__doc__[__doc__.index("Lossy settings report"):].rstrip() + "\n\n"
                                  "Without --preset, --max-error, pruning or sharing flags the file is\n"
                                  "lossless: every tensor comes back bit-exact.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="checkpoints, judged by content (any suffix): safetensors, torch (.pt, .bin, .ckpt; "
                             "weights_only), npz, dcf, ONNX, a model folder or its *.index.json; - reads safetensors "
                             "from stdin (with -o)")
    parser.add_argument("-o", "--output", metavar="OUT.dcf",
                        help="the dcf file to write (one input only; default: the input's name with .dcf)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--key", metavar="KEY",
                        help="pack one subtree of a torch training checkpoint alone (dotted: model, state_dict, "
                             "optimizer.state); default: every tensor, under dotted names")
    parser.add_argument("--attach", metavar="FILE", action="append",
                        help="store FILE inside the .dcf, byte-exact, under its base name (repeatable); a model "
                             "folder's configuration and tokenizer files are stored without it; dcunpack to a "
                             "folder writes them back")
    add_recipe_arguments(parser)
    add_preset_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--profile", choices=("mobile",),
                     help="mobile: no zstd (the zstd-less C decoder reads it), dense raw tensors PLAIN and 64-byte "
                          "aligned (usable in place from a memory map), chunks of at most 2^18 elements "
                          "(decoding scratch <= 3.5 MiB per thread); combines with any preset")
    out.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE", help="extra metadata (repeatable)")
    out.add_argument("--table", choices=("md", "csv", "json"),
                     help="print the per-layer table (with fidelity) to stdout")
    out.add_argument("--no-verify", action="store_true", help="do not read the file back to check it")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bars, no summary")
    args = parser.parse_args(argv)

    def body() -> int:
        from ..pack.packer import pack

        jobs = output_names(args.inputs, args.output)
        if args.target_size is not None:
            return each("dcpack", jobs, lambda source, output: pack_target(args, source, output))
        if args.sensitivity is not None:
            raise UsageError("--sensitivity weighs the allocation of --target-size: give --target-size SIZE too")
        recipe = recipe_from_args(args)
        metadata = _metadata(args.metadata)
        if recipe.preset == "aggressive":
            say("dcpack", "warning: the aggressive preset prunes 90% of fully connected weights without retraining: "
                "the model's outputs will change badly. Retrain with dcformat.torch (masked fine-tuning, "
                "then codebook fine-tuning) before using it.")
        note_first_compile("dcpack", KERNEL_MODULES + (() if recipe.lossless else ("kmeans",)), args.quiet)

        def one(source, output):
            check_overwrite(output, args.force, [source])
            named = {"source_name": "<stdin>"} if source == "-" else {}
            result = pack(read_stdin_checkpoint() if source == "-" else source, output, recipe, metadata=metadata,
                          progress=not args.quiet, verify=not args.no_verify, profile=args.profile, key=args.key,
                          attach=args.attach, **named)
            if not args.quiet:
                # a preset by its name, a custom recipe in a few words (dcinfo shows it whole)
                mode = recipe.describe()
                if recipe.preset:
                    mode = f"preset {recipe.preset}"
                shown = "<stdin>" if source == "-" else source
                say("dcpack", f"{sanitize(shown, 10**6)} -> {sanitize(output, 10**6)} ({mode})")
                say("dcpack", result.summary())
            report_errors(result.tensors, recipe, quiet=args.quiet)
            for line in result.warnings:
                say("dcpack", f"warning: {sanitize(line, 2000)}")
            for line in [] if args.quiet else result.notes:
                say("dcpack", f"note: {sanitize(line, 2000)}")
            if args.table:
                from ..pack.tables import layer_table

                sys.stdout.write(layer_table(output, result.tensors).render(args.table))

        return each("dcpack", jobs, one)

    return run("dcpack", body)


if __name__ == "__main__":
    sys.exit(main())
