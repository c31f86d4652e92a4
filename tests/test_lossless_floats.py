"""The lossless writer's choices for float weights: a codebook of the distinct values for 16-bit
floats when that is smaller (bfloat16 through an exact float32 codebook), smaller chunks for
float32 byte planes, and the Huffman table builder that long (16-bit) codes need."""
from __future__ import annotations

import numpy as np
import pytest

import dcformat
from dcformat import Encoding
from dcformat.codecs import huffman
from dcformat.constants import CodebookDType, Layout, ValueCoding
from dcformat.encoding import RAW_FLOAT_CHUNK_ELEMENTS, encode_tensor
from dcformat.errors import EncodingError
from dcformat.kernels import jit
from dcformat.structures import numpy_dtype

BF16 = numpy_dtype(3)


def _weights(n, seed=0, dtype=BF16):
    """Trained-like weights: Gaussian, per-row scales, as ``dtype``."""
    rng = np.random.default_rng(seed)
    rows = max(1, n // 384)
    scale = rng.uniform(0.02, 0.08, size=(rows, 1))
    return (rng.normal(size=(rows, n // rows)) * scale).astype(np.float32).astype(dtype)


def _bits(array):
    return np.ascontiguousarray(array).view(np.uint8).tobytes()


def _round_trip(tensors, encodings=None):
    data = dcformat.save(tensors, encodings=encodings)
    back = dcformat.load(data)
    for name, array in tensors.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        assert _bits(back[name]) == _bits(array), name
    with _reader(data) as reader:
        infos = {info.name: info for info in reader.tensors_info()}
    return data, infos


def _reader(data):
    return dcformat.DCFReader(bytes(data))


def test_bfloat16_weights_use_an_exact_float32_codebook_and_round_trip():
    w = _weights(600_000)
    data, infos = _round_trip({"w": w})
    info = infos["w"]
    assert info.value_coding == ValueCoding.CODEBOOK and info.codebook_dtype == CodebookDType.F32
    assert info.codebook_size == np.unique(w.view(np.uint16)).size
    never, _ = _round_trip({"w": w}, {"w": Encoding(codebook="never")})
    assert len(data) < len(never)  # joint coding of exponent and mantissa pays for table and codebook
    with _reader(data) as reader:  # the codebook values are the tensor's own values, exactly
        shared = reader.get_codebook_tensor("w")
        assert _bits(shared.decode()) == _bits(w)


@pytest.mark.parametrize("dtype", [BF16, np.float16])
@pytest.mark.parametrize("seed", range(6))
def test_sixteen_bit_floats_never_larger_than_without_codebook(dtype, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(64, 300_000))
    tensors = {"w": _weights(n, seed, dtype)}
    if seed % 2:  # few distinct values: a quantized tensor saved as a plain array
        tensors["q"] = rng.choice(np.linspace(-1, 1, 17), size=n).astype(dtype)
    data, _ = _round_trip(tensors)
    never, _ = _round_trip(tensors, {k: Encoding(codebook="never") for k in tensors})
    assert len(data) <= len(never)


def test_small_bfloat16_tensor_with_many_values_stays_raw():
    w = _weights(2_000, 3)  # more distinct values than a quarter of the elements
    _, infos = _round_trip({"w": w})
    assert infos["w"].value_coding == ValueCoding.RAW


def test_bfloat16_special_values_round_trip_bit_exact():
    """NaNs with payloads (which a float32 → bfloat16 conversion may not keep), infinities, signed
    zeros and subnormals come back bit for bit, whichever coding the writer picks."""
    w = _weights(40_000, 5).reshape(-1).copy()
    specials = np.array([0x7F81, 0xFFC1, 0x7FC0, 0x7F80, 0xFF80, 0x8000, 0x0000, 0x0001, 0x807F], np.uint16)
    w.view(np.uint16)[:specials.size * 50] = np.repeat(specials, 50)
    _round_trip({"w": w})
    rng = np.random.default_rng(6)
    tame = rng.choice(specials[2:], size=20_000).view(BF16)  # exact in a float32 codebook
    _, infos = _round_trip({"t": tame})
    assert infos["t"].value_coding == ValueCoding.CODEBOOK
    # the same with NaN payloads that a float32 -> bfloat16 conversion turns into 0x7FC0 / 0xFFC0:
    # no codebook, though it would be as small
    payloads = rng.choice(specials, size=20_000).view(BF16)
    _, infos = _round_trip({"p": payloads})
    assert infos["p"].value_coding == ValueCoding.RAW


def test_float32_byte_planes_use_smaller_chunks_by_default():
    w = _weights(600_000, 1, np.float32)
    encoded = encode_tensor(w)
    assert encoded.layout == Layout.DENSE and encoded.value_coding == ValueCoding.RAW
    step = RAW_FLOAT_CHUNK_ELEMENTS[4]
    assert [extent for extent, _ in encoded.chunks] == [step, step, w.size - 2 * step]
    explicit = encode_tensor(w, Encoding(chunk_elements=100_000))
    assert [extent for extent, _ in explicit.chunks] == [100_000] * 5 + [w.size - 500_000]
    raw16 = encode_tensor(w.astype(BF16), Encoding(codebook="never"))
    assert [extent for extent, _ in raw16.chunks] == [w.size]  # 2-byte floats keep 2**20
    _round_trip({"w": w})


@pytest.mark.parametrize("bad", [0, -1, 2**28 + 1, 1.5, "big"])
def test_chunk_elements_validated(bad):
    with pytest.raises(EncodingError):
        Encoding(chunk_elements=bad)
    assert Encoding(chunk_elements=None).chunk_elements is None


@pytest.mark.parametrize("seed", range(30))
def test_build_table_long_codes(seed):
    """The two-pass table builder against the direct one, for code lengths up to 16 bits."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6000))
    frequencies = np.maximum(1, (rng.pareto(0.6 + seed / 20, size=n) * 10).astype(np.int64))
    lengths = huffman.code_lengths(frequencies, int(rng.integers(max(1, (n - 1).bit_length()), 17)))
    max_length = int(lengths.max())
    codes = huffman._reversed_codes(huffman.canonical_codes(lengths), lengths)
    kernels = jit("huffman")
    assert np.array_equal(kernels.build_table(lengths, max_length),
                          kernels.decode_table(lengths, codes, max_length))


def test_build_table_one_symbol():
    lengths = np.zeros(300, np.uint8)
    lengths[257] = 1
    table = jit("huffman").build_table(lengths, 1)
    assert table.tolist() == [(257 << 5) | 1, 0]


def _zipnn_sizes(tensors, dtype):
    zipnn = pytest.importorskip("zipnn")
    z = zipnn.ZipNN(input_format="byte", bytearray_dtype=dtype, threads=2)
    parts = [np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes() for a in tensors.values()]
    per_tensor = sum(len(z.compress(bytearray(b))) for b in parts)
    return per_tensor, len(z.compress(bytearray(b"".join(parts))))


def _minilm():
    from pack_fixtures import minilm_checkpoint
    from safetensors.numpy import load_file

    return load_file(minilm_checkpoint())


@pytest.mark.parametrize("dtype", ["bfloat16", pytest.param("float32", marks=pytest.mark.slow)])
def test_minilm_smaller_than_zipnn(dtype):
    """The real MiniLM (cast to bfloat16, and float32): the lossless default is smaller than ZipNN
    on each tensor apart and on all of them concatenated (bfloat16: by 0.24 % and 0.30 %)."""
    tensors = {k: v.astype(BF16) if dtype == "bfloat16" else v for k, v in _minilm().items()}
    per_tensor, concatenated = _zipnn_sizes(tensors, dtype)
    data, _ = _round_trip(tensors)
    assert len(data) < min(per_tensor, concatenated)


@pytest.mark.parametrize("seed", range(8))
def test_adaptive_chunk_bounds_are_valid_and_follow_the_statistics(seed):
    from dcformat.encoding import ADAPTIVE_BLOCK, ADAPTIVE_MAX_CHUNK, adaptive_chunk_bounds

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 3000))
    cut = ADAPTIVE_BLOCK * int(rng.integers(2, 12))
    n = cut + int(rng.integers(1, 12 * ADAPTIVE_BLOCK))
    low = rng.integers(0, max(1, k // 8), size=cut)  # two regions with different alphabets
    high = rng.integers(k - max(1, k // 8), k, size=n - cut)
    symbols = np.concatenate([low, high]).astype(np.int32)
    bounds = adaptive_chunk_bounds(symbols, k)
    assert bounds[0] == 0 and bounds[-1] == n
    extents = np.diff(bounds)
    assert (extents > 0).all() and (extents <= ADAPTIVE_MAX_CHUNK).all()
    assert all(b % ADAPTIVE_BLOCK == 0 for b in bounds[:-1])
    assert cut in bounds  # no chunk mixes the two regions
    assert adaptive_chunk_bounds(symbols[:1000], k) == [0, 1000]


def test_bfloat16_codebook_chunks_split_where_the_statistics_change():
    rng = np.random.default_rng(9)
    a = (rng.normal(size=300_000) * 0.01).astype(BF16)  # small weights
    b = (rng.normal(size=500_000) * 3.0).astype(BF16)  # large ones: other exponents
    w = np.concatenate([a, b]).reshape(-1, 400)
    data, infos = _round_trip({"w": w})
    info = infos["w"]
    assert info.value_coding == ValueCoding.CODEBOOK and len(info.chunks) >= 2
    fixed, _ = _round_trip({"w": w}, {"w": Encoding(chunk_elements=2**20)})  # one chunk for both
    assert len(data) < len(fixed)
