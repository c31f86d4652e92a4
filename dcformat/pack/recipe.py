"""Recipes: which compression each tensor of a checkpoint gets.

A recipe is an ordered list of rules; a floating-point tensor takes the policy of the **first**
rule that matches it, and a tensor that no rule matches (or that is not floating point) is stored
raw and lossless. As JSON (or the same Python dict)::

    {
      "only": ["encoder.*", "pooler.*"],                        optional: the tensors to pack
      "rules": [
        {"match": "*embeddings*", "store": "raw"},               first matching rule wins
        {"rank": 2, "sparsity": 0.9, "bits": 5},                 fully connected: prune, share
        {"rank": [3, 4], "sparsity": 0.65, "bits": 8, "index_bits": "paper"},
        {"rank": "any", "min_size": 0, "store": "float16"}       everything else as float16
      ]
    }

What a rule matches (all must hold):

``match``, ``exclude``
    shell patterns (``fnmatch``, case-sensitive) on the tensor name, a string or a list;
    ``match`` defaults to ``"*"``.
``rank``
    an int, a list of ints, or ``"any"``. Default: 2 or more, so biases and norms (rank 1) stay raw
    unless a rule names rank 1.
``min_size``, ``max_size``
    bounds on the element count. ``min_size`` defaults to 4096: small tensors stay raw.

What it does (the policy; every field optional):

``prune``
    ``"magnitude"`` (prune the fraction ``sparsity`` of smallest ``|w|`` in the tensor — implied by
    ``sparsity``), ``"threshold"`` (Deep Compression's Caffe rule ``|w| < quality × std(w)`` —
    implied by ``quality``), ``"filter"`` (``sparsity`` of every output row/filter), ``"global"``
    (one magnitude threshold over every tensor whose rule says global with the same
    ``sparsity``), or ``"none"``.
``share``
    ``"kmeans"`` (implied by ``bits`` or ``k``): k-means on the surviving weights, ``init``
    ``"linear"`` (default, the paper's best), ``"density"`` or ``"random"``, ``method`` ``"lloyd"``
    (``iters`` rounds, default 300) or ``"exact"``; ``"pow2"``: INQ's power-of-two levels
    (``bits`` 2..16: ``2**(bits-1)`` levels plus zero); or ``"none"``.
    ``bits`` is the width of a codebook symbol: with pruning, one of the ``2**bits`` symbols is the
    zero that CSR fillers use, so k-means finds ``2**bits - 1`` centroids (``2**bits`` without
    pruning). ``k`` sets the number of centroids directly.
``index_bits``
    CSR relative-index width: ``"auto"`` (default: the writer picks the width with the fewest
    bytes, fillers included), ``"paper"`` (Deep Compression's 5 bits for fully connected, 8 for
    conv), or 1..16.
``layout``
    ``"auto"`` (default): a pruned tensor with at most 25% of its elements left is stored CSR
    (Deep Compression's layout) straight away, any other tensor as the writer finds smallest;
    ``"csr"`` or ``"dense"`` force one.
``store``
    for tensors that are not weight-shared: ``"raw"`` (default, lossless after pruning) or
    ``"float16"`` (values rounded to float16, dtype kept: lossy).
``codebook_dtype``
    ``"float32"`` (default) or ``"float16"``.
``max_error``, ``search``
    an error budget instead of fixed settings (no ``prune``/``share``/``store`` with it): per
    tensor, the smallest encoding whose relative error ``‖W − Ŵ‖ / ‖W‖`` is at most
    ``max_error``, among raw storage and magnitude pruning × k-means sharing with ``search``
    ``"sparsity+bits"`` (default: pruning 25, 50, 75 or 90% with 2..8-bit codebooks, and no pruning
    with 2..12-bit codebooks) or ``"bits"`` (no pruning, 2..12 bits). See :mod:`dcformat.pack.budget`; a looser budget never gives a larger
    tensor.

Presets (``dcpack --preset``, :func:`preset_recipe`); the recipe's ``"preset"`` key records which
(the figures are :mod:`dcformat.pack.facts`'):

``lossless`` (the default)
    every tensor bit-exact. Floats are stored as byte planes (sign/exponent bytes apart from the
    mantissa bytes, each plane entropy coded): ZipNN's method, 1.22× smaller than float32
    on MiniLM.
``safe``
    weight sharing without pruning; per tensor the smallest codebook (k-means of 2..12 bits, or a
    uniform grid) whose relative error stays within ``SAFE_MAX_ERROR`` (token embedding tables:
    ``SAFE_EMBEDDING_ERROR``; or the one budget given). On MiniLM: 5.86× smaller than float32,
    sentence embeddings at cosine 0.9987 to the original, paraphrase matching unchanged — usable
    without retraining.
``indistinguishable``
    the same search at ``INDISTINGUISHABLE_MAX_ERROR`` (embedding tables
    ``INDISTINGUISHABLE_EMBEDDING_ERROR``): on MiniLM 5.23× smaller, embeddings at cosine 0.9995
    (int8 per channel keeps 0.9995 at 8 bits per weight).
``aggressive``
    Deep Compression's settings (fully connected 90% pruned + 5-bit codebooks, conv 65% + 8
    bits): 34.9× smaller, but without retraining the model's outputs are destroyed (relative
    error ~0.7 per matrix). Retrain with :mod:`dcformat.torch` (masked fine-tuning, then codebook
    fine-tuning) before use.
"""
from __future__ import annotations

import fnmatch
import json
import math
import numbers
import os
from dataclasses import dataclass, field, replace

import numpy as np

from . import facts
from .errors import RecipeError

PRUNE = ("none", "magnitude", "threshold", "filter", "global")
SHARE = ("none", "kmeans", "pow2", "uniform")
INITS = ("linear", "density", "random")
METHODS = ("lloyd", "exact")
STORE = ("raw", "float16")
LAYOUTS = ("auto", "csr", "dense")
CSR_DENSITY = 0.25
"""With layout "auto", a pruned tensor this dense or sparser is stored CSR without a dense trial."""
ALL_RANKS = tuple(range(9))
DEFAULT_RANKS = tuple(range(2, 9))
DEFAULT_MIN_SIZE = 4096
PAPER_INDEX_BITS = {"fc": 5, "conv": 8}
"""Deep Compression's relative-index widths (section 2): 5 bits fully connected, 8 bits conv."""
METADATA_KEY = "dcformat.recipe"
SEARCHES = ("sparsity+bits", "bits")
PRESETS = ("lossless", "safe", "indistinguishable", "aggressive")
SAFE_MAX_ERROR = facts.SAFE_MAX_ERROR
SAFE_EMBEDDING_ERROR = facts.SAFE_EMBEDDING_ERROR
"""The safe preset's budgets: ``SAFE_EMBEDDING_ERROR`` for token embedding tables, ``SAFE_MAX_ERROR``
for every other matrix. Chosen on all-MiniLM-L6-v2 with the demo's numpy forward pass
(:func:`dcformat.demo.make_evaluator`, 24 sentences) over a grid of (embedding, other) budgets
(0.005–0.05 each; ``tools/bench_fidelity.py``), as the smallest file whose cosine is no lower than
the previous safe preset's (one budget 0.03 with power-of-two codebooks only: 16,032,956 B, cosine
0.9975). Once the search lands on its budget (the grid candidate) one budget 0.03 gives 15.2 MB
but cosine 0.996, and 0.02 gives 16.9 MB: a lookup table's error stays in the rows it touches,
where a matrix's passes through every later layer, so the embedding table takes the looser
budget (0.05 there and 0.015 elsewhere: 15.5 MB, cosine 0.9987, every paraphrase matched)."""
INDISTINGUISHABLE_MAX_ERROR = facts.INDISTINGUISHABLE_MAX_ERROR
INDISTINGUISHABLE_EMBEDDING_ERROR = facts.INDISTINGUISHABLE_EMBEDDING_ERROR
"""The indistinguishable preset's budgets, chosen on the same grid as the smallest file with
embedding cosine ≥ 0.999 and a margin of about half the gap to it (0.03 / 0.01: cosine 0.9995, 17.4 MB;
0.05 / 0.01 gave 0.9993 at 16.3 MB, one budget 0.015 gave 0.9991 at 18.1 MB)."""
EMBEDDING_PATTERNS = ("*word_embeddings.weight", "*embed_tokens.weight", "*tok_embeddings.weight",
                      "*wte.weight", "*token_embedding.weight", "*shared.weight")
"""Names of token embedding tables (BERT, Llama/OPT, Llama's original, GPT-2, CLIP, T5): the role the
presets give a looser budget."""


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Policy:
    """What happens to one tensor. The default is lossless: stored raw."""

    prune: str = "none"
    sparsity: float | None = None
    quality: float | None = None
    share: str = "none"
    bits: int | None = None
    k: int | None = None
    step: float | None = None
    """Grid step of share "uniform" (entropy-constrained scalar quantization, :mod:`dcformat.compress.ecsq`)."""
    init: str = "linear"
    method: str = "lloyd"
    iters: int = 300
    seed: int = 0
    index_bits: int | str = "auto"
    layout: str = "auto"
    store: str = "raw"
    codebook_dtype: str = "float32"
    max_error: float | None = None
    search: str = "sparsity+bits"

    FIELDS = ("prune", "sparsity", "quality", "share", "bits", "k", "step", "init", "method", "iters", "seed",
              "index_bits", "layout", "store", "codebook_dtype", "max_error", "search")

    @classmethod
    def from_dict(cls, spec: dict, where: str = "policy") -> "Policy":
        """A checked policy from a rule's policy fields; ``prune`` and ``share`` are inferred."""
        spec = dict(spec)
        if spec.get("quality") is not None and spec.get("sparsity") is not None:
            raise RecipeError(f"{where}: give sparsity or quality, not both")
        if "prune" not in spec:
            if spec.get("quality") is not None:
                spec["prune"] = "threshold"
            elif spec.get("sparsity") is not None:
                spec["prune"] = "magnitude"
        if "share" not in spec and (spec.get("bits") is not None or spec.get("k") is not None):
            spec["share"] = "kmeans"
        if "share" not in spec and spec.get("step") is not None:
            spec["share"] = "uniform"
        policy = cls(**{key: value for key, value in spec.items() if value is not None})
        policy.check(where)
        return policy

    def check(self, where: str) -> None:
        def bad(message):
            raise RecipeError(f"{where}: {message}")

        if self.prune not in PRUNE:
            bad(f"prune must be one of {', '.join(PRUNE)}, not {self.prune!r}")
        if self.share not in SHARE:
            bad(f"share must be one of {', '.join(SHARE)}, not {self.share!r}")
        if self.sparsity is not None and not (_is_real(self.sparsity) and 0 <= self.sparsity < 1):
            bad(f"sparsity must be a number in [0, 1), not {self.sparsity!r}")
        if self.quality is not None and not (_is_real(self.quality) and self.quality >= 0):
            bad(f"quality must be a number >= 0, not {self.quality!r}")
        if self.prune in ("magnitude", "filter", "global") and self.sparsity is None:
            bad(f"prune {self.prune!r} needs a sparsity")
        if self.prune == "threshold" and self.quality is None:
            bad("prune 'threshold' needs a quality (prune |w| < quality × std)")
        if self.prune != "threshold" and self.quality is not None:
            bad("quality is only used by prune 'threshold'")
        if self.prune in ("none", "threshold") and self.sparsity is not None:
            bad(f"sparsity is not used by prune {self.prune!r}")
        if self.bits is not None and not (_is_int(self.bits) and 1 <= self.bits <= 16):
            bad(f"bits must be an integer 1..16, not {self.bits!r}")
        if self.k is not None and not (_is_int(self.k) and 1 <= self.k <= 65536):
            bad(f"k must be an integer 1..65536, not {self.k!r}")
        if self.share == "kmeans":
            if self.bits is None and self.k is None:
                bad("share 'kmeans' needs bits or k")
            if self.bits is not None and self.k is not None and self.k > 2**self.bits:
                bad(f"k = {self.k} does not fit in {self.bits} bits")
        elif self.share == "pow2":
            if self.bits is None or self.bits < 2:
                bad("share 'pow2' needs bits 2..16")
            if self.k is not None:
                bad("share 'pow2' takes bits, not k")
        elif self.share == "uniform":
            if self.step is None or not (_is_real(self.step) and 0 < self.step < float("inf")):
                bad(f"share 'uniform' needs a step > 0, not {self.step!r}")
            if self.bits is not None or self.k is not None:
                bad("share 'uniform' takes a step, not bits or k")
        elif self.bits is not None or self.k is not None:
            bad("bits and k need share 'kmeans' or 'pow2'")
        if self.step is not None and self.share != "uniform":
            bad("step needs share 'uniform'")
        if self.init not in INITS:
            bad(f"init must be one of {', '.join(INITS)}, not {self.init!r}")
        if self.method not in METHODS:
            bad(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not (_is_int(self.iters) and self.iters >= 0):
            bad(f"iters must be an integer >= 0, not {self.iters!r}")
        if not (_is_int(self.seed) and self.seed >= 0):
            bad(f"seed must be an integer >= 0, not {self.seed!r}")
        if self.index_bits not in ("auto", "paper") and not (_is_int(self.index_bits) and 1 <= self.index_bits <= 16):
            bad(f"index_bits must be 'auto', 'paper' or 1..16, not {self.index_bits!r}")
        if self.layout not in LAYOUTS:
            bad(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.store not in STORE:
            bad(f"store must be one of {', '.join(STORE)}, not {self.store!r}")
        if self.codebook_dtype not in ("float32", "float16"):
            bad(f"codebook_dtype must be 'float32' or 'float16', not {self.codebook_dtype!r}")
        if self.search not in SEARCHES:
            bad(f"search must be one of {', '.join(SEARCHES)}, not {self.search!r}")
        if self.max_error is not None:
            if not (_is_real(self.max_error) and self.max_error >= 0):
                bad(f"max_error must be a number >= 0, not {self.max_error!r}")
            if self.prune != "none" or self.share != "none" or self.store != "raw":
                bad("max_error chooses pruning and sharing itself: drop prune, sparsity, bits, k and store")
        elif self.search != "sparsity+bits":
            bad("search needs max_error")

    @property
    def lossless(self) -> bool:
        return self.prune == "none" and self.share == "none" and self.store == "raw" and self.max_error is None

    def centroids(self, pruned: bool) -> int:
        """k-means centroids: ``k``, else ``2**bits`` less the zero symbol a pruned layer needs."""
        if self.k is not None:
            return self.k
        return max(1, 2**self.bits - (1 if pruned else 0))

    def resolved_index_bits(self, rank: int) -> int | str:
        if self.index_bits == "paper":
            return PAPER_INDEX_BITS["conv" if rank >= 3 else "fc"] if rank >= 2 else "auto"
        return self.index_bits

    def to_dict(self) -> dict:
        """The fields that differ from the defaults (enough to rebuild the policy)."""
        default = Policy()
        return {name: getattr(self, name) for name in self.FIELDS if getattr(self, name) != getattr(default, name)}

    def describe(self) -> str:
        """A few words for tables: ``prune 90% · k-means 5 bits · index auto``."""
        if self.max_error is not None:
            return f"error ≤ {self.max_error:g}, search {self.search}"
        parts = []
        if self.prune == "magnitude":
            parts.append(f"prune {100 * self.sparsity:g}%")
        elif self.prune == "filter":
            parts.append(f"prune {100 * self.sparsity:g}%/filter")
        elif self.prune == "global":
            parts.append(f"prune {100 * self.sparsity:g}% global")
        elif self.prune == "threshold":
            parts.append(f"prune |w|<{self.quality:g}σ")
        if self.share == "kmeans":
            parts.append(f"k-means k={self.k}" if self.k is not None else f"k-means {self.bits} bits")
        elif self.share == "pow2":
            parts.append(f"pow2 {self.bits} bits")
        elif self.share == "uniform":
            parts.append(f"uniform step {self.step:.4g}")
        if self.store == "float16" and self.share == "none":
            parts.append("float16")
        if self.codebook_dtype == "float16" and self.share != "none":
            parts.append("float16 codebook")
        if not parts:
            return "raw"
        if self.index_bits != "auto" and self.prune != "none":
            parts.append(f"index {self.index_bits}")
        return " · ".join(parts)


def _patterns(value, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RecipeError(f"{where}: {key} must be a pattern or a non-empty list of patterns, not {value!r}")


def _ranks(value, where: str) -> tuple[int, ...]:
    if value == "any":
        return ALL_RANKS
    values = [value] if not isinstance(value, (list, tuple)) else list(value)
    if not values or not all(_is_int(v) and 0 <= v <= 8 for v in values):
        raise RecipeError(f"{where}: rank must be 0..8, a list of them, or 'any', not {value!r}")
    return tuple(sorted(set(int(v) for v in values)))


@dataclass(frozen=True)
class Rule:
    """A policy and the tensors it applies to."""

    policy: Policy = field(default_factory=Policy)
    match: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    rank: tuple[int, ...] = DEFAULT_RANKS
    min_size: int = DEFAULT_MIN_SIZE
    max_size: int | None = None
    name: str | None = None

    MATCH_FIELDS = ("match", "exclude", "rank", "min_size", "max_size", "name")

    @classmethod
    def from_dict(cls, spec, where: str) -> "Rule":
        if not isinstance(spec, dict):
            raise RecipeError(f"{where}: a rule must be an object, not {type(spec).__name__}")
        unknown = set(spec) - set(cls.MATCH_FIELDS) - set(Policy.FIELDS)
        if unknown:
            known = ", ".join(cls.MATCH_FIELDS + Policy.FIELDS)
            raise RecipeError(f"{where}: unknown key {sorted(unknown)[0]!r}; known: {known}")
        kwargs = {}
        if "match" in spec:
            kwargs["match"] = _patterns(spec["match"], where, "match")
        if "exclude" in spec:
            kwargs["exclude"] = _patterns(spec["exclude"], where, "exclude")
        if "rank" in spec:
            kwargs["rank"] = _ranks(spec["rank"], where)
        for key in ("min_size", "max_size"):
            if spec.get(key) is not None:
                if not (_is_int(spec[key]) and spec[key] >= 0):
                    raise RecipeError(f"{where}: {key} must be an integer >= 0, not {spec[key]!r}")
                kwargs[key] = int(spec[key])
        if spec.get("name") is not None:
            if not isinstance(spec["name"], str):
                raise RecipeError(f"{where}: name must be a string")
            kwargs["name"] = spec["name"]
        where = f"{where} ({kwargs['name']})" if "name" in kwargs else where
        try:
            policy = Policy.from_dict({k: v for k, v in spec.items() if k in Policy.FIELDS}, where)
        except TypeError as exc:  # pragma: no cover - keys are checked above
            raise RecipeError(f"{where}: {exc}") from None
        return cls(policy=policy, **kwargs)

    def matches(self, name: str, array: np.ndarray) -> bool:
        if array.ndim not in self.rank or array.size < self.min_size:
            return False
        if self.max_size is not None and array.size > self.max_size:
            return False
        if not any(fnmatch.fnmatchcase(name, p) for p in self.match):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def to_dict(self) -> dict:
        out = {}
        if self.name is not None:
            out["name"] = self.name
        if self.match != ("*",):
            out["match"] = list(self.match)
        if self.exclude:
            out["exclude"] = list(self.exclude)
        if self.rank != DEFAULT_RANKS:
            out["rank"] = "any" if self.rank == ALL_RANKS else list(self.rank)
        if self.min_size != DEFAULT_MIN_SIZE:
            out["min_size"] = self.min_size
        if self.max_size is not None:
            out["max_size"] = self.max_size
        out.update(self.policy.to_dict())
        return out


def is_float(array: np.ndarray) -> bool:
    return array.dtype.kind == "f" or array.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")


@dataclass(frozen=True)
class Recipe:
    """Rules (first match wins) and an optional selection of the tensors to pack."""

    rules: tuple[Rule, ...] = ()
    only: tuple[str, ...] | None = None
    preset: str | None = None
    """The preset this recipe came from (recorded in the file's metadata), if any."""

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec) -> "Recipe":
        if isinstance(spec, Recipe):
            return spec
        if spec is None:
            return cls()
        if not isinstance(spec, dict):
            raise RecipeError(f"a recipe must be an object with 'rules', not {type(spec).__name__}")
        unknown = set(spec) - {"rules", "only", "comment", "preset"}
        if unknown:
            raise RecipeError(f"recipe: unknown key {sorted(unknown)[0]!r}; known: rules, only, comment, preset")
        preset = spec.get("preset")
        if preset is not None and preset not in PRESETS:
            raise RecipeError(f"recipe: preset must be one of {', '.join(PRESETS)}, not {preset!r}")
        rules = spec.get("rules", [])
        if not isinstance(rules, list):
            raise RecipeError("recipe: rules must be a list")
        only = _patterns(spec["only"], "recipe", "only") if spec.get("only") is not None else None
        return cls(tuple(Rule.from_dict(r, f"rule {i + 1}") for i, r in enumerate(rules)), only, preset)

    @classmethod
    def from_json(cls, text: str, where: str = "recipe") -> "Recipe":
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecipeError(f"{where}: invalid JSON ({exc})") from None
        return cls.from_dict(spec)

    @classmethod
    def from_file(cls, path) -> "Recipe":
        """A recipe from a JSON file, or the recipe stored in a dcf file's metadata."""
        path = os.fspath(path)
        if path.lower().endswith(".dcf"):
            from .. import open as open_dcf

            with open_dcf(path) as reader:
                text = reader.metadata().get(METADATA_KEY)
            if text is None:
                raise RecipeError(f"{path!r}: this dcf file has no {METADATA_KEY!r} metadata")
            return cls.from_json(text, path)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise RecipeError(f"{path!r}: {exc.strerror or exc}") from None
        return cls.from_json(text, path)

    @classmethod
    def from_flags(cls, *, sparsity=None, conv_sparsity=None, quality=None, per_filter=False, global_=False,
                   bits=None, conv_bits=None, pow2=False, init="linear", index_bits="auto", min_size=DEFAULT_MIN_SIZE,
                   keep=(), only=(), float16=False, codebook_dtype="float32") -> "Recipe":
        """The recipe the command-line flags describe.

        Fully connected weights are the floating-point tensors of rank 2 (embedding tables
        included: a lookup table is a fully connected layer fed one-hot vectors); conv weights
        have rank 3 or more. ``conv_sparsity`` and ``conv_bits`` default to ``sparsity`` and
        ``bits``. ``keep`` patterns stay raw, ``only`` patterns select the tensors to pack, and
        ``float16`` stores every other floating-point tensor as float16.
        """
        if quality is not None and (sparsity is not None or conv_sparsity is not None):
            raise RecipeError("give --quality or --sparsity, not both")
        if per_filter and global_:
            raise RecipeError("--per-filter and --global exclude each other")
        if (per_filter or global_) and sparsity is None and conv_sparsity is None:
            raise RecipeError("--per-filter and --global need --sparsity")
        prune = "filter" if per_filter else "global" if global_ else None
        rules = []
        if keep:
            rules.append({"name": "keep", "match": list(keep), "rank": "any", "min_size": 0})
        for name, ranks, s, b in (("conv", list(range(3, 9)), conv_sparsity if conv_sparsity is not None else sparsity,
                                   conv_bits if conv_bits is not None else bits),
                                  ("fc", [2], sparsity, bits)):
            spec = {"name": name, "rank": ranks, "min_size": min_size}
            if s is None and quality is None and b is None:
                continue  # nothing lossy for this kind of layer
            if s is not None:
                spec.update(sparsity=s, prune=prune or "magnitude")
            elif quality is not None:
                spec.update(quality=quality)
            if b is not None:
                spec.update(bits=b, share="pow2" if pow2 else "kmeans")
                if not pow2 and init != "linear":
                    spec["init"] = init
                if codebook_dtype != "float32":
                    spec["codebook_dtype"] = codebook_dtype
            if index_bits != "auto":
                spec["index_bits"] = index_bits
            rules.append(spec)
        if float16:
            rules.append({"name": "rest", "rank": "any", "min_size": 0, "store": "float16"})
        if pow2 and bits is None and conv_bits is None:
            raise RecipeError("--pow2 needs --bits")
        return cls.from_dict({"rules": rules, "only": list(only) if only else None})

    # -- use -------------------------------------------------------------------------------------
    def selects(self, name: str) -> bool:
        return self.only is None or any(fnmatch.fnmatchcase(name, p) for p in self.only)

    def unmatched_patterns(self, names) -> list[str]:
        """The rules' ``match`` and ``exclude`` patterns that match none of ``names``, described
        (``"--keep 'emb*'"``, ``"rule 2 (fc): match 'fc*'"``)."""
        names = list(names)
        out = []
        for i, rule in enumerate(self.rules, 1):
            for key in ("match", "exclude"):
                for pattern in getattr(rule, key):
                    if pattern == "*" or any(fnmatch.fnmatchcase(n, pattern) for n in names):
                        continue
                    if self.preset and rule.name == "embeddings" and pattern in EMBEDDING_PATTERNS:
                        continue  # a preset's role rule: each model names its embedding table one way
                    if rule.name == "keep" and key == "match":
                        out.append(f"--keep {pattern!r}")
                    else:
                        out.append(f"rule {i}{f' ({rule.name})' if rule.name else ''}: {key} {pattern!r}")
        return out

    def rule_for(self, name: str, array: np.ndarray) -> Rule | None:
        """The first rule that matches a floating-point tensor; None: stored raw."""
        if not is_float(array):
            return None
        return next((rule for rule in self.rules if rule.matches(name, array)), None)

    def policy_for(self, name: str, array: np.ndarray) -> Policy:
        rule = self.rule_for(name, array)
        return rule.policy if rule is not None else Policy()

    @property
    def lossless(self) -> bool:
        return all(rule.policy.lossless for rule in self.rules)

    def to_dict(self) -> dict:
        out = {"preset": self.preset} if self.preset is not None else {}
        out["rules"] = [rule.to_dict() for rule in self.rules]
        if self.only is not None:
            out["only"] = list(self.only)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False, separators=(",", ":"))

    def describe(self, most: int = 3) -> str:
        """A few words per rule for a status line: ``fc: prune 90% · k-means 5 bits; conv: ...``
        (a rule by its name, else its patterns; rules past ``most`` counted; ``lossless`` without
        a lossy rule). The whole recipe is :meth:`to_json`, which the file's metadata keeps."""
        if self.lossless:
            return "lossless"
        words = [f"keep {','.join(rule.match)}" if rule.policy.lossless else
                 f"{rule.name or ','.join(rule.match)}: {rule.policy.describe()}"
                 for rule in self.rules if not (rule.policy.lossless and rule.match == ("*",))]
        if len(words) > most:
            more = len(words) - most
            words = words[:most] + [f"{more} more rule{'s' if more > 1 else ''}"]
        return "; ".join(words)

    # -- Deep Compression's stages -------------------------------------------------------------
    def _map(self, change) -> "Recipe":
        return Recipe(tuple(replace(rule, policy=change(rule.policy)) for rule in self.rules), self.only)

    def without_pruning(self) -> "Recipe":
        """The same recipe with every pruning removed (stage U+Q)."""
        return self._map(lambda p: replace(p, prune="none", sparsity=None, quality=None))

    def without_sharing(self) -> "Recipe":
        """The same recipe with weight sharing and float16 storage removed (stage P)."""
        return self._map(lambda p: replace(p, share="none", bits=None, k=None, store="raw", codebook_dtype="float32"))

    def lossless_only(self) -> "Recipe":
        """Every tensor raw (stage U); the selection ``only`` is kept."""
        return Recipe((), self.only)

    def stages(self) -> dict[str, "Recipe"]:
        """Deep Compression's stages: U, U+Q, P, P+Q (uncompressed, quantized, pruned, both)."""
        return {"U": self.lossless_only(), "U+Q": self.without_pruning(), "P": self.without_sharing(), "P+Q": self}


def preset_recipe(name: str, *, max_error: float | None = None, only=(), keep=(),
                  min_size: int = DEFAULT_MIN_SIZE) -> Recipe:
    """The recipe of a preset (see the module docstring): ``lossless``, ``safe`` or ``aggressive``.

    ``max_error`` replaces the safe preset's budgets by one for every tensor; ``keep`` patterns stay raw,
    ``only`` patterns select the tensors to pack, as with :meth:`Recipe.from_flags`.
    """
    if name not in PRESETS:
        raise RecipeError(f"preset must be one of {', '.join(PRESETS)}, not {name!r}")
    if max_error is not None and name not in ("safe", "indistinguishable"):
        raise RecipeError(f"the {name} preset takes no error budget (only safe and indistinguishable do)")
    if name == "aggressive":
        base = Recipe.from_flags(sparsity=0.9, conv_sparsity=0.65, bits=5, conv_bits=8, min_size=min_size,
                                 keep=keep, only=only)
        return Recipe(base.rules, base.only, name)
    rules = [{"name": "keep", "match": list(keep), "rank": "any", "min_size": 0}] if keep else []
    if name in ("safe", "indistinguishable"):
        emb, rest = ((SAFE_EMBEDDING_ERROR, SAFE_MAX_ERROR) if name == "safe"
                     else (INDISTINGUISHABLE_EMBEDDING_ERROR, INDISTINGUISHABLE_MAX_ERROR))
        if max_error is None:
            rules.append({"name": "embeddings", "match": list(EMBEDDING_PATTERNS), "min_size": min_size,
                          "search": "bits", "max_error": emb})
        rules.append({"name": name, "min_size": min_size, "search": "bits",
                      "max_error": rest if max_error is None else max_error})
    return Recipe.from_dict({"preset": name, "rules": rules, "only": list(only) if only else None})


def budget_recipe(max_error: float, *, only=(), keep=(), min_size: int = DEFAULT_MIN_SIZE) -> Recipe:
    """Every weight (rank >= 2, ``min_size`` elements or more) at the smallest encoding within ``max_error``."""
    rules = [{"name": "keep", "match": list(keep), "rank": "any", "min_size": 0}] if keep else []
    rules.append({"name": "budget", "min_size": min_size, "max_error": max_error})
    return Recipe.from_dict({"rules": rules, "only": list(only) if only else None})


def coerce_recipe(recipe) -> Recipe:
    """A :class:`Recipe` from a Recipe, a dict, a JSON/dcf file path, or None (lossless)."""
    if isinstance(recipe, (str, os.PathLike)):
        return Recipe.from_file(recipe)
    return Recipe.from_dict(recipe)
