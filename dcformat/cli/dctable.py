"""dctable: Deep Compression's tables, from real files.

    dctable model.dcf                           per-layer table: % kept, weight and index bits
                                                (fixed-width / stored / entropy), size % of dense
    dctable model.dcf --source model.safetensors   ... plus share pruned and relative error per tensor
    dctable --stages model.safetensors -d out/ --sparsity 0.9 --bits 5
                                                U / U+Q / P / P+Q, each packed to a .dcf in out/,
                                                next to gzip -9 and zstd -19 of the dense weights
    dctable --budgets 0.01,0.02,0.05,0.1 model.safetensors [--plot sweep.png] [--layers]
                                                the file `dcpack --max-error E` writes for each E
                                                (bytes, ratio, largest error, bits per weight) and
                                                each tensor's setting, from one search

--format picks md (default), csv or json. --recipe also takes a .dcf file to reuse its recipe.
Errors print one line and exit with status 1 (2 for bad usage).
"""
from __future__ import annotations

import argparse
import sys

from ._common import KERNEL_MODULES, OneLineParser, UsageError, note_first_compile, run
from .dcpack import add_recipe_arguments, recipe_from_args

STAGES = ("U", "U+Q", "P", "P+Q")


def _stage_list(text: str) -> tuple[str, ...]:
    stages = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown stage {bad[0]!r}; stages: {', '.join(STAGES)}")
    return stages


def _baselines(text: str) -> tuple[str, ...]:
    if text == "none":
        return ()
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in ("gzip", "zstd")]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown baseline {bad[0]!r}; use gzip, zstd, both or none")
    return names


def _budget_list(text: str) -> tuple[float, ...]:
    try:
        budgets = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"budgets must be comma-separated numbers, not {text!r}") from None
    if not budgets or any(not (0 <= b < float("inf")) for b in budgets):
        raise argparse.ArgumentTypeError(f"budgets must be finite numbers >= 0, not {text!r}")
    return budgets


def main(argv=None) -> int:
    parser = OneLineParser(prog="dctable", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", metavar="FILE", help="a .dcf file, or with --stages a checkpoint")
    parser.add_argument("--format", choices=("md", "csv", "json"), default="md")
    parser.add_argument("--source", metavar="CHECKPOINT", help="add fidelity columns against this checkpoint")
    stages = parser.add_argument_group("stage table (--stages)")
    stages.add_argument("--stages", action="store_true", help="INPUT is a checkpoint: pack U, U+Q, P, P+Q and compare")
    stages.add_argument("-d", "--out-dir", metavar="DIR", help="where the stage files go (required with --stages)")
    stages.add_argument("--baselines", type=_baselines, default=("gzip", "zstd"), metavar="gzip,zstd|none",
                        help="dense baselines to run (default: gzip,zstd; zstd -19 takes ~45 s per 90 MB)")
    stages.add_argument("--baseline-stages", type=_stage_list, metavar="STAGE,...",
                        help="run the baselines only for these stages (e.g. U,P+Q)")
    stages.add_argument("--layers", action="store_true",
                        help="also print the per-layer table of the P+Q file (with --budgets: each tensor's setting)")
    sweep = parser.add_argument_group("error-budget sweep (--budgets)")
    sweep.add_argument("--budgets", type=_budget_list, metavar="E,E,...",
                       help="INPUT is a checkpoint: the file --max-error E gives, for each E (one search)")
    sweep.add_argument("--no-pruning", action="store_true",
                       help="search codebook bits only, as --preset safe does (default: pruning too)")
    sweep.add_argument("--plot", metavar="FILE.png", help="draw size against budget and bits per tensor")
    add_recipe_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    def body() -> int:
        from ..pack.tables import layer_table, stage_table

        lossy = args.budgets is not None or args.stages
        note_first_compile("dctable", KERNEL_MODULES + (("kmeans",) if lossy else ()), args.quiet)
        if args.budgets is not None:
            if args.stages:
                raise UsageError("--budgets and --stages are two different tables: give one")
            return _budgets(args)
        if args.plot or args.no_pruning:
            raise UsageError(f"--{'plot' if args.plot else 'no-pruning'} needs --budgets")
        if not args.stages:
            flags = ("sparsity", "conv_sparsity", "quality", "bits", "conv_bits", "recipe", "out_dir", "baseline_stages")
            given = [flag for flag in flags if getattr(args, flag) is not None]
            if given:
                raise UsageError(f"--{given[0].replace('_', '-')} needs --stages")
            reports = None
            if args.source:
                from ..pack.packer import compare

                reports = compare(args.input, args.source)
            sys.stdout.write(layer_table(args.input, reports).render(args.format))
            return 0
        if not args.out_dir:
            raise UsageError("--stages needs --out-dir DIR for the stage files")
        recipe = recipe_from_args(args)
        table, details = stage_table(args.input, recipe, args.out_dir, baselines=args.baselines,
                                     baseline_stages=args.baseline_stages, progress=not args.quiet)
        sys.stdout.write(table.render(args.format))
        if args.layers:
            final = details["stages"]["P+Q"]
            layers = layer_table(final["dcf"], final["result"].tensors, stats=final["stats"])
            sys.stdout.write("\n" + layers.render(args.format))
        return 0

    return run("dctable", body)


def _budgets(args) -> int:
    from ..pack.sweep import allocation_table, budget_sweep, plot_sweep, sweep_table

    result = budget_sweep(args.input, args.budgets, search="bits" if args.no_pruning else "sparsity+bits",
                          progress=not args.quiet)
    sys.stdout.write(sweep_table(result).render(args.format))
    if args.layers:
        sys.stdout.write("\n" + allocation_table(result).render(args.format))
    if args.plot:
        plot_sweep(result, args.plot)
        print(f"dctable: plot written to {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
