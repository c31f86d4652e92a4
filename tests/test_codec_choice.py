"""The writer's cheaper codec choice: every codec's ``prepare`` knows the exact size its ``encode``
gives, so encoding only the winner picks what encoding every candidate would have picked; the
zstd probe leaves zstd out only of larger streams it cannot win."""
from __future__ import annotations

import numpy as np
import pytest

from dcformat.codecs import encode_smallest, get_codec, prepare_smallest, zstd
from dcformat.constants import Codec
from dcformat.errors import EncodingError

SEEDS = range(25)


def _streams(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 20_000))
    p = np.exp(-np.arange(40) / rng.uniform(2, 20))
    yield rng.choice(40, size=n, p=p / p.sum()).astype(np.uint8), 1
    yield rng.integers(0, int(rng.integers(1, 3000)), size=n).astype(np.uint16), 2
    yield rng.integers(0, 2**int(rng.integers(1, 32)), size=n).astype(np.uint32), 4
    yield np.abs(rng.laplace(0, 0.05, size=n)).astype(np.float32).view(np.uint32), 4
    yield np.full(n, 7, np.uint8), 1


@pytest.mark.parametrize("seed", SEEDS)
def test_prepare_sizes_are_exact(seed):
    for elements, size in _streams(seed):
        for codec in (Codec.PLAIN, Codec.BITPACK, Codec.HUFFMAN, Codec.BYTEPLANES):
            module = get_codec(codec)
            try:
                encoded = module.encode(elements, size)
            except EncodingError:
                with pytest.raises(EncodingError):
                    module.prepare(elements, size)
                continue
            prepared = module.prepare(elements, size)
            assert prepared.size == len(encoded.payload), codec
            assert prepared.finish() == encoded, codec


def _brute_force(elements, size, candidates, options=None):
    best = None
    for codec in candidates:
        try:
            result = get_codec(codec).encode(elements, size, **(options or {}).get(codec, {}))
        except EncodingError:
            continue
        if best is None or len(result.payload) < len(best.payload):
            best = result
    return best


@pytest.mark.parametrize("seed", SEEDS)
def test_choice_equals_encoding_every_candidate(seed):
    for elements, size in _streams(seed):
        for candidates in ([Codec.BITPACK, Codec.HUFFMAN, Codec.PLAIN], [Codec.PLAIN, Codec.BYTEPLANES],
                           [Codec.HUFFMAN, Codec.BITPACK], [Codec.ZSTD, Codec.PLAIN, Codec.HUFFMAN]):
            if Codec.BYTEPLANES in candidates and size == 1:
                continue
            if Codec.ZSTD in candidates and elements.nbytes > zstd.PROBE_MIN_BYTES:
                continue  # the probe may leave zstd out: tested below
            assert encode_smallest(elements, size, candidates) == _brute_force(elements, size, candidates)


def test_ties_go_to_the_earlier_candidate():
    elements = np.arange(256, dtype=np.uint8)  # 8 bits each whatever the codec: PLAIN = BITPACK size
    assert encode_smallest(elements, 1, [Codec.BITPACK, Codec.PLAIN]).codec == Codec.BITPACK
    assert encode_smallest(elements, 1, [Codec.PLAIN, Codec.BITPACK]).codec == Codec.PLAIN


def test_zstd_probe():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=200_000, dtype=np.uint8)
    assert zstd.prepare(noise, 1, limit=noise.size) is None  # cannot beat PLAIN: not compressed
    assert zstd.prepare(noise, 1).size > 0  # no limit: always compressed
    small = noise[:zstd.PROBE_MIN_BYTES]
    assert zstd.prepare(small, 1, limit=1) is not None  # small streams skip the probe
    repetitive = np.tile(np.arange(100, dtype=np.uint8), 3000)
    prepared = zstd.prepare(repetitive, 1, limit=repetitive.size // 10)
    assert prepared is not None and prepared.size < repetitive.size // 100
    assert encode_smallest(repetitive, 1, [Codec.HUFFMAN, Codec.ZSTD]).codec == Codec.ZSTD
    assert encode_smallest(noise, 1, [Codec.PLAIN, Codec.ZSTD]).codec == Codec.PLAIN


def test_prepared_winner_is_encoded_once(monkeypatch):
    from dcformat.codecs import huffman

    calls = []
    original = huffman._serialize
    monkeypatch.setattr(huffman, "_serialize", lambda *a: calls.append(1) or original(*a))
    elements = np.random.default_rng(1).integers(0, 3, size=10_000).astype(np.uint8)
    prepared = prepare_smallest(elements, 1, [Codec.PLAIN, Codec.BITPACK, Codec.HUFFMAN])
    assert calls == []
    prepared.finish()
    assert calls == [1]
