"""Golden vectors (spec/vectors/): decode to the expected arrays, re-encode to the same bytes.

The vectors are committed once and never regenerated without a format-version bump; a writer
change that alters their bytes fails here.
"""
import json
import pathlib

import numpy as np
import pytest

import dcformat
from dcformat.vectors import array_from_json, encode_vector, vector_definitions

VECTORS = pathlib.Path(__file__).parent.parent / "spec" / "vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.dcf"))


def load_spec(name):
    return json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))


def test_every_defined_vector_is_committed():
    assert len(NAMES) >= 10
    assert set(vector_definitions()) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_vector_decodes_to_expected(name):
    spec = load_spec(name)
    data = (VECTORS / f"{name}.dcf").read_bytes()
    with dcformat.DCFReader(data) as f:
        assert f.keys() == list(spec["expected"])
        assert f.metadata() == spec["metadata"]
        for key, expected in spec["expected"].items():
            want = array_from_json(expected)
            got = f.get_tensor(key)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert got.tobytes() == want.tobytes(), key


@pytest.mark.parametrize("name", NAMES)
def test_vector_reencodes_to_same_bytes(name):
    assert encode_vector(load_spec(name)) == (VECTORS / f"{name}.dcf").read_bytes()


def test_vectors_cover_every_codec_layout_and_coding():
    from dcformat.constants import Codec

    seen_codecs, seen = set(), set()
    for name in NAMES:
        with dcformat.open(VECTORS / f"{name}.dcf") as f:
            for info in f.tensors_info():
                seen.add((info.layout, info.value_coding))
                for stream in info.streams:
                    seen_codecs.add(stream.codec)
                    if stream.codec == Codec.BYTEPLANES:
                        seen_codecs.add("byteplanes")
    assert set(Codec) <= seen_codecs
    assert len(seen) == 4  # dense/csr x raw/codebook


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
