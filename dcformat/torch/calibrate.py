"""Per-weight sensitivities from a few calibration inputs: the diagonal of the output's Fisher.

For a model ``f`` whose outputs should stay where they are (no labels needed), the loss of a small
weight change ``δ`` is, to second order, ``½ δᵀ JᵀJ δ`` with ``J`` the Jacobian of the outputs with
respect to the weights (the Gauss–Newton / Fisher matrix of an output-matching loss). Its diagonal
``Σ_j J_ji²`` weights each weight's squared quantization error, as the Hessian-weighted k-means of
Choi et al. (ICLR 2017) and the sensitivity-weighted k-means of SqueezeLLM do. It is estimated
without forming ``J``: for random ``r`` with unit variance, ``E[(Jᵀr)_i²] = Σ_j J_ji²``, and ``Jᵀr``
is one backward pass of ``r · f(x)``. :func:`calibrate` averages ``probes`` such passes per input.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["calibrate", "calibrate_texts", "save_sensitivities", "read_texts", "main"]


def calibrate(model, inputs, *, probes: int = 4, seed: int = 0, names=None) -> dict[str, np.ndarray]:
    """``{parameter name: per-weight sensitivity}`` (float32 arrays of the parameters' shapes):
    the diagonal of ``JᵀJ`` averaged over ``inputs``, ``J`` the Jacobian of ``model(x)`` (a tensor,
    or a tuple whose first item is used) with respect to the parameters.

    ``inputs``: an iterable of inputs, each passed as ``model(x)`` (a tuple: ``model(*x)``);
    ``names``: the parameters to measure (default: every floating-point parameter). Deterministic
    for a given ``seed``. Gradients are accumulated outside the parameters' ``.grad``.
    """
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be an integer >= 1, not {probes!r}")
    params = {n: p for n, p in model.named_parameters() if p.dtype.is_floating_point}
    if names is not None:
        missing = sorted(set(names) - set(params))
        if missing:
            raise ValueError(f"no parameter named {missing[0]!r}")
        params = {n: params[n] for n in names}
    if not params:
        raise ValueError("the model has no floating-point parameter to calibrate")
    total = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    generator = torch.Generator().manual_seed(seed)
    count = 0
    for x in inputs:
        out = model(*x) if isinstance(x, tuple) else model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        for k in range(probes):
            r = torch.randn(out.shape, generator=generator, dtype=out.dtype)
            grads = torch.autograd.grad((out * r).sum(), list(params.values()), retain_graph=k < probes - 1,
                                        allow_unused=True)
            for (n, _), g in zip(params.items(), grads):
                if g is not None:
                    total[n] += g.detach().to(torch.float64) ** 2
        count += probes
    if count == 0:
        raise ValueError("inputs is empty: give at least one calibration input")
    return {n: (t / count).to(torch.float32).numpy() for n, t in total.items()}


# ---------------------------------------------------------------------------------------------
# A Hugging Face model folder and a file of texts -> a sensitivity file (python -m dcformat.torch.calibrate)

OUTPUTS = ("pooled", "hidden")
"""What the sensitivities keep close: ``pooled``, the normalised mean of the last hidden states over
the tokens (a sentence embedding, as sentence-transformers models such as MiniLM give), or
``hidden``, every token's last hidden state."""


class _TextModel(torch.nn.Module):
    """A transformers model as a function of one text's token ids -> the output to keep."""

    def __init__(self, model, output: str):
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, ids):
        hidden = self.model(input_ids=ids[None]).last_hidden_state[0]
        if self.output == "hidden":
            return hidden
        pooled = hidden.mean(0)
        return pooled / pooled.norm()


def read_texts(path) -> list[str]:
    """The non-blank lines of a UTF-8 text file, one calibration input each."""
    import os

    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            texts = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        raise ValueError(f"{path!r}: no such file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path!r}: not UTF-8 text (one calibration text per line)") from None
    if not texts:
        raise ValueError(f"{path!r}: no text in it (one calibration text per line)")
    return texts


def calibrate_texts(model_dir, texts, *, probes: int = 4, seed: int = 0, output: str = "pooled",
                    max_length: int = 128) -> dict[str, np.ndarray]:
    """Per-weight sensitivities of the model in the Hugging Face folder ``model_dir`` (read with
    transformers, local files only) from ``texts``: :func:`calibrate` of the model's ``output``
    (:data:`OUTPUTS`) for each text, tokenized by the folder's tokenizer (at most ``max_length``
    tokens). Names are the model's parameter names, which for a base model (BERT, MiniLM) are the
    names in its checkpoint."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    try:
        import transformers
    except ImportError:
        raise ImportError("calibrating a model folder needs transformers: pip install transformers") from None
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: give at least one calibration text")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = transformers.AutoModel.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"{model_dir!r}: not a model folder transformers can read ({first})") from None
    model.eval()
    model.float()
    wrapped = _TextModel(model, output)
    inputs = [torch.as_tensor(tokenizer(t, truncation=True, max_length=max_length)["input_ids"]) for t in texts]
    sens = calibrate(wrapped, inputs, probes=probes, seed=seed)
    return {n[len("model."):]: s for n, s in sens.items()}


def save_sensitivities(path, sensitivities: dict, *, per_tensor: bool = False, metadata: dict | None = None) -> str:
    """:func:`dcformat.pack.sensitivity.save_sensitivities`: a file for ``dcpack --sensitivity``."""
    from ..pack.sensitivity import save_sensitivities as save

    return save(path, sensitivities, per_tensor=per_tensor, metadata=metadata)


def main(argv=None) -> int:
    """``python -m dcformat.torch.sensitivity --model FOLDER --texts FILE -o SENS.safetensors`` (a
    module of its own, so that ``python -m`` does not import this one twice)."""
    import argparse
    import os
    import sys
    import time

    parser = argparse.ArgumentParser(
        prog="python -m dcformat.torch.sensitivity",
        description="Write per-weight sensitivities (the diagonal of the output's Fisher matrix, estimated "
                    "from a few calibration texts) of a Hugging Face model folder, for dcpack --sensitivity.",
        epilog="Example: python -m dcformat.torch.sensitivity --model all-MiniLM-L6-v2/ --texts texts.txt "
               "-o minilm.sens.safetensors; then dcpack all-MiniLM-L6-v2/ --target-size 8x --sensitivity "
               "minilm.sens.safetensors. A few texts (8 to 32) of the kind the model will see are enough.")
    parser.add_argument("--model", required=True, metavar="FOLDER", help="a model folder transformers reads "
                        "(config.json, weights, tokenizer); nothing is downloaded")
    parser.add_argument("--texts", required=True, metavar="FILE", help="UTF-8 text, one calibration input per line")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.safetensors", help="the sensitivity file to write")
    parser.add_argument("--per-tensor", action="store_true",
                        help="store one number per tensor (its mean) instead of one per weight")
    parser.add_argument("--keep", choices=OUTPUTS, default="pooled",
                        help="the output to keep close: pooled (normalised mean of the last hidden states: "
                             "a sentence embedding; default) or hidden (every token's last hidden state)")
    parser.add_argument("--probes", type=int, default=4, help="random probes per text (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="probe seed (default 0)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text at most (default 128)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    args = parser.parse_args(argv)
    prog = "calibrate"
    if os.path.exists(args.output) and not args.force:
        print(f"{prog}: error: {args.output!r} exists (use -f to overwrite)", file=sys.stderr)
        return 1
    if args.probes < 1 or args.max_length < 1:
        print(f"{prog}: error: --probes and --max-length must be >= 1", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()  # this process only: one summary line instead
    except ImportError:
        pass
    try:
        texts = read_texts(args.texts)
        sens = calibrate_texts(args.model, texts, probes=args.probes, seed=args.seed, output=args.keep,
                               max_length=args.max_length)
        kind = save_sensitivities(args.output, sens, per_tensor=args.per_tensor, metadata={
            "method": "Fisher diagonal of the output (random probes)", "output": args.keep,
            "texts": len(texts), "probes": args.probes, "seed": args.seed,
            "model": os.path.basename(os.path.normpath(args.model))})
    except (ValueError, ImportError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    weights = sum(int(s.size) for s in sens.values())
    print(f"{prog}: {len(sens)} tensors, {weights:,} weights, {len(texts)} texts x {args.probes} probes -> "
          f"{args.output} ({kind}, {os.path.getsize(args.output):,} bytes; {time.perf_counter() - start:.1f} s)",
          file=sys.stderr)
    return 0
