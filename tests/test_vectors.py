"""Golden vectors (spec/vectors/): decode to the expected arrays, re-encode to the same bytes.

The vectors are committed once and never regenerated; a writer change that alters their bytes
fails here. Vectors added later (17 onward) cover what the first ones did not; the tests at the
end check that the set covers it.
"""
import json
import pathlib

import numpy as np
import pytest

import dcformat
from dcformat.constants import FLOAT8_DTYPES, Codec, CodebookDType, DType, Layout, ValueCoding
from dcformat.reader import DCFReader
from dcformat.vectors import array_from_json, encode_vector, vector_definitions, vector_json

VECTORS = pathlib.Path(__file__).parent.parent / "spec" / "vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.dcf"))


def load_spec(name):
    return json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))


def test_every_defined_vector_is_committed():
    assert len(NAMES) >= 28
    assert set(vector_definitions()) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_vector_decodes_to_expected(name):
    spec = load_spec(name)
    data = (VECTORS / f"{name}.dcf").read_bytes()
    with DCFReader(data) as f:
        assert f.keys() == list(spec["expected"])
        assert f.metadata() == spec["metadata"]
        for key, expected in spec["expected"].items():
            want = array_from_json(expected)
            got = f.get_tensor(key)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert got.tobytes() == want.tobytes(), key
        f.verify_all()


@pytest.mark.parametrize("name", NAMES)
def test_vector_reencodes_to_same_bytes(name):
    assert encode_vector(load_spec(name)) == (VECTORS / f"{name}.dcf").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_definition_is_what_the_json_says(name):
    """The JSON documents the committed file (its doc, inputs and expected arrays come from the
    definition); the encodings are left out: Encoding gained fields since the first vectors."""
    committed = load_spec(name)
    defined = json.loads(json.dumps(vector_json(name, vector_definitions()[name]), ensure_ascii=False))
    committed.pop("encodings"), defined.pop("encodings")
    assert committed == defined
    assert committed["doc"] and name in (VECTORS / "README.md").read_text(encoding="utf-8")


def test_vectors_cover_every_codec_layout_and_coding():
    seen_codecs, seen = set(), set()
    for name in NAMES:
        with DCFReader((VECTORS / f"{name}.dcf").read_bytes()) as f:
            for info in f.tensors_info():
                seen.add((info.layout, info.value_coding))
                for stream in info.streams:
                    seen_codecs.add(stream.codec)
    assert set(Codec) <= seen_codecs
    assert len(seen) == 4  # dense/csr x raw/codebook


def _all_tensors():
    for name in NAMES:
        data = (VECTORS / f"{name}.dcf").read_bytes()
        with DCFReader(data) as f:
            for info in f.tensors_info():
                yield name, data, info


def _huffman_header(data, stream):
    """(lane_count, alphabet_size, lane lengths) of a HUFFMAN payload."""
    lanes = data[stream.offset + 1]
    alphabet = int.from_bytes(data[stream.offset + 4:stream.offset + 8], "little")
    start = stream.offset + 8 + (5 * alphabet + 7) // 8
    return lanes, alphabet, [int.from_bytes(data[start + 4 * j:start + 4 * j + 4], "little") for j in range(lanes)]


def test_vectors_cover_what_a_second_decoder_got_wrong_or_had_to_guess():
    """Each item of issue 11's list of uncovered cases has a vector (spec §11, 2026-12-01)."""
    import zstandard

    found = set()
    for name, data, info in _all_tensors():
        found.add(("dtype", info.dtype))
        if info.shape == ():
            found.add("rank 0")
        if info.value_coding == ValueCoding.CODEBOOK:
            found.add(("conversion", CodebookDType(info.codebook_dtype), info.dtype))
            if info.codebook_size > 4096:
                found.add("codebook of thousands")
        if info.layout == Layout.CSR and info.index_bits > 12:
            found.add(("index_bits", info.index_bits))
        for stream in info.streams:
            if stream.count == 0:
                assert (stream.codec, stream.length, stream.crc32) == (Codec.PLAIN, 0, 0)
                found.add("empty stream")
            if stream.codec == Codec.BITPACK and info.value_coding == ValueCoding.RAW \
                    and stream.role.value == "values" and info.dtype in (DType.I64, DType.U64, DType.F64):
                found.add("bitpack of 8-byte elements")
            if stream.codec == Codec.HUFFMAN:
                lanes, alphabet, lengths = _huffman_header(data, stream)
                if lanes == 8:
                    found.add("8 lanes" if all(lengths) else "8 lanes, some empty")
                if info.dtype == DType.BOOL and stream.role.value == "values":
                    assert alphabet <= 2
                    found.add("huffman bool")
            if stream.codec == Codec.ZSTD and zstandard.get_frame_parameters(
                    data[stream.offset:stream.offset + stream.length]).has_checksum:
                found.add("zstd checksum")
    # the 1.0 vectors: every dtype and codebook dtype of 1.0 (the float8 ones of 1.2 have their own)
    conversions = {("conversion", c, d) for c in (CodebookDType.F32, CodebookDType.F16)
                   for d in (DType.F32, DType.F16, DType.BF16, DType.F64)}
    wanted = {("dtype", d) for d in DType if d not in FLOAT8_DTYPES} | conversions | {
        "rank 0", "codebook of thousands", ("index_bits", 13), ("index_bits", 16), "empty stream",
        "bitpack of 8-byte elements", "8 lanes", "8 lanes, some empty", "huffman bool", "zstd checksum"}
    assert wanted <= found, wanted - found


def test_special_values_vector_holds_every_nan_kind():
    """Vector 20: signalling and quiet NaNs of both signs in each codebook, so every row of the
    conversion table of spec §7.2 is exercised."""
    spec = load_spec("20_codebook_special_values")
    for name, inputs in spec["inputs"].items():
        codebook = array_from_json(inputs["codebook"])
        bits = codebook.view(np.uint32 if codebook.dtype == np.float32 else np.uint16).astype(np.int64)
        quiet = 1 << (22 if codebook.dtype == np.float32 else 9)
        nan = np.isnan(codebook)
        sign = bits >> (31 if codebook.dtype == np.float32 else 15)
        assert {(bool(s), bool(b & quiet)) for s, b in zip(sign[nan], bits[nan])} == {
            (False, True), (True, True), (False, False), (True, False)}, name
        assert np.isinf(codebook).sum() == 2 and (codebook == 0).sum() == 2


def test_converter_metadata_is_the_restore_rule():
    """Vector 28: what a converter to safetensors writes as __metadata__ (spec §4.1.1)."""
    from dcformat.pack.packer import source_metadata

    spec = load_spec("28_source_metadata")
    metadata = spec["metadata"]
    assert list(spec["converter_metadata"].items()) == list({**metadata, **source_metadata(metadata)}.items())
    assert spec["converter_metadata"]["note"] == "café 😀"


def test_spec_worked_examples_match_the_code():
    """The hex in FORMAT.md's worked examples is what the code writes, byte for byte."""
    import re

    spec = (VECTORS.parent / "FORMAT.md").read_text(encoding="utf-8")
    section = spec[spec.index("## 10. Worked example"):spec.index("## 11.")]
    rows = re.findall(r"^\| \d+ \| ((?:`[0-9A-F ]+` ?)+) \|", section, re.M)
    file_hex = "".join(cell.replace("`", "").replace(" ", "") for cell in rows)
    assert bytes.fromhex(file_hex) == (VECTORS / "16_worked_example.dcf").read_bytes()

    from dcformat.codecs import huffman

    huff = spec[spec.index("**Worked example.** Four symbols"):spec.index("The HUFFMAN payload's `length`")]
    block = huff[huff.index("```") + 3:huff.rindex("```")]
    payload = bytes.fromhex("".join(line.split("  ")[0] for line in block.strip().splitlines()))
    assert huffman.decode(payload, 5, 1, 0, None).tolist() == [0, 1, 2, 3, 0]
    symbols = np.array([0, 1, 2, 3, 0], np.uint8)
    assert huffman.serialize(symbols, np.array([1, 2, 3, 3], np.uint8), 1) == payload


def test_vectors_load_through_the_public_api():
    data = (VECTORS / "17_scalar_rank0.dcf").read_bytes()
    tensors = dcformat.load(data)
    assert tensors["scalar"].shape == () and float(tensors["scalar"]) == -1.25
