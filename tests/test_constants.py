"""constants.py mirrors spec/FORMAT.md: every enum value and limit appears in the spec."""
import pathlib
import re

from dcformat import constants as c

SPEC = (pathlib.Path(__file__).parent.parent / "spec" / "FORMAT.md").read_text(encoding="utf-8")


def test_limits_in_spec():
    for name in dir(c):
        if name.startswith("MAX_"):
            value = getattr(c, name)
            row = re.search(rf"\| `{name}` \| ([^|]+)\|", SPEC)
            assert row, f"{name} has no row in the spec's limits table"
            text = row.group(1).replace(",", "")
            numbers = [int(n) for n in re.findall(r"\d+", text)]
            assert value in numbers or (len(numbers) >= 2 and numbers[0] ** numbers[1] == value), (name, text)


def test_enums_in_spec():
    for dtype in c.DType:
        version = f" ({'1.' + str(c.DTYPE_MINOR[dtype])})" if dtype in c.DTYPE_MINOR else ""
        assert re.search(rf"\| {dtype.value} \| {dtype.name}{re.escape(version)} \| {c.DTYPE_SIZE[dtype]} \|", SPEC), dtype
    for codec in c.Codec:
        assert f"{codec.name} ({codec.value})" in SPEC, codec
    assert "0 = DENSE, 1 = CSR" in SPEC and "0 = RAW, 1 = CODEBOOK" in SPEC
    assert "`89 44 43 46`" in SPEC and c.MAGIC == bytes.fromhex("89444346")
    assert f"| `version_major` | {c.VERSION_MAJOR} |" in SPEC


def test_other_enums_in_spec():
    """Codebook dtypes, BYTEPLANES transforms and the codec list of the descriptor table."""
    assert [(d.value, d.name) for d in c.CodebookDType] == [(1, "F32"), (2, "F16"), (14, "F8_E4M3"), (15, "F8_E5M2")]
    assert "CODEBOOK: 1 (F32) or 2 (F16); for a float8 tensor (1.2) its own dtype, 14 or 15 (§7.2); RAW: 0" in SPEC
    assert all(c.DType[d.name] == d.value for d in c.CodebookDType)  # "same ids as DType"
    assert f"| 6 | 2 | `version_minor` | 0, 1 or 2 (writers)" in SPEC and c.VERSION_MINOR == 2
    assert [(t.value, t.name) for t in c.PlaneTransform] == [(0, "NONE"), (1, "ROTATE")]
    assert "| `transform` | 0: none; 1: rotate (below); any other value: corrupted" in SPEC
    assert "§8: " + ", ".join(f"{codec.value} {codec.name}" for codec in c.Codec) in SPEC


def _tensor(dtype=c.DType.F32, layout=c.Layout.DENSE, coding=c.ValueCoding.RAW, k=0, index_bits=0, shape=(4, 10)):
    from dcformat.structures import TensorInfo

    return TensorInfo("t", dtype, shape, layout, coding, index_bits, 1 if k else 0, k, None, ())


def _alphabet_limit(role, tensor):
    """The largest Huffman alphabet_size the decoder accepts for a stream (codecs/huffman.py's
    parse_table: min(65536, 2 ** (8 × element_size), the role's element bound))."""
    from dcformat.structures import element_bound, element_size

    bound = element_bound(role, tensor)
    limit = min(c.MAX_HUFFMAN_ALPHABET, 1 << (8 * element_size(role, tensor)))
    return limit if bound is None else min(limit, bound)


def test_huffman_alphabet_bound_table_is_the_decoders():
    """Spec §8.3's table of alphabet bounds, row by row, against the bounds the decoder uses."""
    from dcformat.codecs.byteplanes import PLANE_BOUND

    section = SPEC[SPEC.index("**Alphabet bound.**"):SPEC.index("**Canonical codes.**")]
    rows = dict(re.findall(r"^\| ([^|]+?) \| [^|]+ \| ([^|]+?) \|$", section, re.M))
    CB, VALUES, RC, GAPS = c.Role.CODEBOOK, c.Role.VALUES, c.Role.ROW_COUNTS, c.Role.GAPS
    csr = dict(layout=c.Layout.CSR)
    assert rows["CODEBOOK (F32 or F16 codebook values)"].startswith("65,536")
    for k in (1, 2, 300, 65536):
        assert _alphabet_limit(CB, _tensor(coding=c.ValueCoding.CODEBOOK, k=k)) == 65536
        assert _alphabet_limit(VALUES, _tensor(coding=c.ValueCoding.CODEBOOK, k=k)) == k
    assert rows["VALUES, CODEBOOK"] == "`k`"
    assert rows["VALUES, RAW, BOOL tensor"] == "2" and _alphabet_limit(VALUES, _tensor(c.DType.BOOL)) == 2
    assert rows["VALUES, RAW, I8, U8, F8_E4M3 or F8_E5M2 tensor"] == "256"
    assert rows["CODEBOOK (F8_E4M3 or F8_E5M2 codebook values, 1.2)"] == "256"
    for dtype in (c.DType.F8_E4M3, c.DType.F8_E5M2):
        f8 = _tensor(dtype, coding=c.ValueCoding.CODEBOOK, k=3)._replace(codebook_dtype=int(dtype))
        assert _alphabet_limit(CB, f8) == 256 and _alphabet_limit(VALUES, f8) == 3
    for dtype in c.DType:
        want = {c.DType.BOOL: 2, c.DType.I8: 256, c.DType.U8: 256, c.DType.F8_E4M3: 256,
                c.DType.F8_E5M2: 256}.get(dtype, 65536)
        assert _alphabet_limit(VALUES, _tensor(dtype)) == want, dtype
    assert rows["VALUES, RAW, any other dtype"].startswith("65,536")
    assert rows["ROW_COUNTS"] == "`min(cols + 1, 65536)`"
    for cols in (1, 10, 65535, 65536, 10**6):
        assert _alphabet_limit(RC, _tensor(shape=(3, cols), index_bits=4, **csr)) == min(cols + 1, 65536)
    assert rows["GAPS"] == "`2 ** index_bits`"
    for bits in range(1, c.MAX_INDEX_BITS + 1):
        assert _alphabet_limit(GAPS, _tensor(index_bits=bits, **csr)) == 2**bits
    assert rows["a byte plane of BYTEPLANES (§8.5)"] == "256" == str(PLANE_BOUND)
