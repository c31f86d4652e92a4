"""Compatibility: every released format version stays readable, forever.

The golden vectors of each version (spec/vectors/README.md) are frozen here by their SHA-256:
they are never regenerated, so a reader change that stops decoding one, or a change to the bytes
of one, fails this test. A reader refuses a newer *major* version, naming it, and reads a newer
*minor* version (spec §3.1), refusing only the unknown enum values it meets.
"""
import hashlib
import json
import pathlib
import struct

import numpy as np
import pytest

import dcformat
import fuzz_helpers as fh
from dcformat.constants import EXTENSIONS_MINOR, VERSION_MAJOR, VERSION_MINOR
from dcformat.errors import CorruptFileError, UnsupportedVersionError
from dcformat.vectors import array_from_json

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "spec" / "vectors"

# version -> {file name: SHA-256}. The top level of spec/vectors/ holds the 1.0 vectors; a later
# version's vectors go in spec/vectors/MAJOR.MINOR/ and get an entry here when it is released.
FROZEN = {
    "1.0": {
        "01_dense_raw.dcf": "a92101e770e4ec3b9045d6727505eecee38423add6c669a5c09cf9766a18f75a",
        "02_scalar_empty_types.dcf": "4b0154515d335aa4a15ad65407c836d47cc626906097df7f38c87f9783f6420c",
        "03_csr_fillers_bitpack.dcf": "a9e3a32ee758a3f9c6ea1f7dd233ac27557223aa508b5101a6992bfb94c6559b",
        "04_csr_codebook_huffman.dcf": "fb7416df239fb391a27d25625d9b4b9e2a05258820e2a04d22b5935aed7dd3b6",
        "05_dense_codebook_f16.dcf": "58a8eac69b18a5316daebcc9fcd0252c2cbedfb9c63ac6767c7e6d8710d73448",
        "06_huffman_one_symbol.dcf": "dce50070751753382ce509a58f68e5a48640829e1290fef2eeb0852c71be5514",
        "07_codebook_16bit.dcf": "1b5370bde4f993a42daaba1c5764b8edab39e8f9ab7c09c21d3fa0f49ef36d00",
        "08_multichunk.dcf": "48ead9f17837cd04d584be9a4b2e1ce138d5b78a57ff11da051b53432de2bf70",
        "09_zstd.dcf": "dd938b34d20554d7fdb0ce950634269caea0ec96d55fa3bfcc839a9f06790094",
        "10_byteplanes_lossless.dcf": "5d8235accec2cf665d6ce4ebc7dee8e19ec61c0714c9d368b4de740b5797623c",
        "11_power_of_two.dcf": "1d4c9e6b0aecdcda5bfda1a3c403a54240fc844dfb8c1cd75305bdc1c1ec1e35",
        "12_alignment.dcf": "07cf03dd782a5813d4d84df061aeadd05d2b0c2f06c886f9b1526bb85bcfbd0c",
        "13_metadata_unicode.dcf": "30538f3a64fdaa242cc75901a9a0e33055ea3d4eedbeeb98a09f700e83954d61",
        "14_huffman_lanes.dcf": "b3d130891913418eb9e402ce002c2eb21779dd3166b8412bd4fe1fb212e62f6a",
        "15_lossless_codebook_auto.dcf": "5663964ebb4d013f65955806207511bd7ad6b45938cf495e6a9a0ca1a9f3a3c5",
        "16_worked_example.dcf": "07aaf81fbecfd88c044637b2cb08e119b98f0ffc329f4dfc8b4fa8d675d0363c",
        # added 2026-12-01 with the spec's clarifications (still 1.0)
        "17_scalar_rank0.dcf": "6994c479e0b8e2e83bdcb52c728faf327649b63be20acd05e673126cdbff29de",
        "18_empty_streams.dcf": "3f8d1465076461cb93cc2093502aa9bbcd066aad198007f39261a2c9868351b4",
        "19_codebook_dtypes.dcf": "78267fe510b14f8ec399f2a7fca626b624c8446e78d4ee475cf40c95a1957834",
        "20_codebook_special_values.dcf": "c29f4f6a60dcd6cffd5455c9b33a83d73467ed5aa2119fbc83734c2a8091391d",
        "21_unsigned_32_64.dcf": "a00fab9aaf0826fc252af014372ac965a8f751639abb8445859c209425114752",
        "22_bitpack_8byte.dcf": "d597299c4d947ca86335a733e284442ae635f9c1f1475752d44503244d146615",
        "23_index_bits_13_16.dcf": "5f7058a50324eaad9e8f488f2bf4b22d195c9da5b932540727c2a46dd18ec87b",
        "24_codebook_5000.dcf": "7618643c7cc5e5eb69b3880627a74b9e7b9960e7893f44e6f512a82711877938",
        "25_huffman_8_lanes.dcf": "d716fee7c3cc70635d4e9e2849e18a4b0c6f5a20cffb9e51149fc6cebc88c31b",
        "26_zstd_checksum.dcf": "cc86b6037f84c82c8048afff8390c264e7be9f6541bdc305ce4ee0e4fc1ad64d",
        "27_bool.dcf": "b1952b338704fd27ec2a71da470842a81235ed19990ef339ec4954d0c0d4e646",
        "28_source_metadata.dcf": "b1ba2721c09a4b4989b27fb79b5a8800def7b638bd041de1c774911096bd2253",
        "01_dense_raw.json": "ab940123e3ec8588f4ee41138761200deffc280489163c5568462c0fd1c023fe",
        "02_scalar_empty_types.json": "139b8bcc516e6a6d48030dfebac2f5544e3e2e8f132851a8756efa7574bcb9b9",
        "03_csr_fillers_bitpack.json": "9026a0ea4eae00feb215b23af48a6d73c0de60020d06a7dc237e02be1d0b78e8",
        "04_csr_codebook_huffman.json": "5519dd35dfa59d77713ad16781fb95725630a16e8db597db33da0d6ff83719ae",
        "05_dense_codebook_f16.json": "faf016173d8f5eea132b27c455e180207cc2fc98c602908bfec0948357ef6da1",
        "06_huffman_one_symbol.json": "5363636377ed2084a41cac916b5fe25033e59b78dea59428fad8183325a030ef",
        "07_codebook_16bit.json": "d4ebcfc021fbc7a42ac6b3993b00bdd89b2916d7582cd7512ab5620a0aac64fa",
        "08_multichunk.json": "7703030326941ba711f59fabdb4f7b4c33741a149233ee3ba372ea8ea4de0481",
        "09_zstd.json": "5dbf5774ac6dcc6d69f3d7e9ac16ca54bb7a172d53df6e8452d333b731522ee0",
        "10_byteplanes_lossless.json": "f7803fafdc7a0049c9674fb44e31871e89f27a0911009ae716230fbb9527f6b2",
        "11_power_of_two.json": "7ab2175c0d26a57316ca71b2a6b247767fb82004d5f5ccd2774ae3589106fde9",
        "12_alignment.json": "612880e8a8d3207ce8dd413269c9ac03f193567386d1c7784205356a30cae075",
        "13_metadata_unicode.json": "2494e384998d2258c20421a3c1998cd7a324c4802cc4a479f3b2de82bea8b60b",
        "14_huffman_lanes.json": "9f6cbefbd7ed9303a284292af994bc020a56f0a29946ab4a37ff41bf3399e544",
        "15_lossless_codebook_auto.json": "dc7e49859488dfa4401c3b3dc19634dac1c1ff03a147182968fd8b4aa83c59ca",
        "16_worked_example.json": "b6de79e8434d1ab570aa93eeeedecd1fbedd0ab487e382e3be3eb60e35526afe",
        # added 2026-12-01 with the spec's clarifications (still 1.0)
        "17_scalar_rank0.json": "fe6e211ffdf757b0356d6819b413dea05196c848df5b112648b64b6c949caadd",
        "18_empty_streams.json": "08cb8bef1bd85fa98b554d531faf4f2ee399abb1ebb2a39c0438775ab0c20c53",
        "19_codebook_dtypes.json": "5176981f75647cc71f41d93fcbd4a31e1a46d5470458a607bb21818286307558",
        "20_codebook_special_values.json": "3a5e71b4be49640d069f2b8e4ac8e372c72e27641ee1426a4ee125feac3bad80",
        "21_unsigned_32_64.json": "6870faee4c66debe9b109698d7f2dc434177fe0c68d9290b46840152d458902a",
        "22_bitpack_8byte.json": "14422ec582c13f868cff216cb4b463736f2b042e812a39dee2791d9eb4888543",
        "23_index_bits_13_16.json": "6285e81c6a98aa10a4d61c6928aaa70b1e4cb49bcf12e6f754147f2ddc7a5930",
        "24_codebook_5000.json": "a9bf55f6f03684e258602271315ce3deff7021f6f2b8ae9e7c09f083c9ab851c",
        "25_huffman_8_lanes.json": "3a5cf763dc6bc6dcc45a9d8f25e2c61d18e79a1ea7490062f7ab85f800cdd8fc",
        "26_zstd_checksum.json": "3213dba4bac7559c3d90bd6dfcf9472a57e1cd79b20ce123f84fcaf01002e66e",
        "27_bool.json": "9801e137ceab1e640561b96f0aeabe70668e379dcfca6aab28e922797581f444",
        "28_source_metadata.json": "62ba025740ff0aadbb3326b0b9ced525fd5b3d4877eaa306a49eb3431b560201",
    },
    "1.1": {  # released 2026-12-01: extension records (spec §4.6)
        "29_attachments.dcf": "ee1330ed1ad1a94083fe2387dad3089af84f704064975936a97bb1de4c535989",
        "29_attachments.json": "d8428f6f3b3dfccacf6123f6e003c166962b6ef713c4ea3957c4158a0e0ef5bc",
        "30_aliases.dcf": "67f44d3857f51681e34f0cc377226ff7351522315d71bb381bf79031d9312644",
        "30_aliases.json": "8dfa2cd71645745a08abe63ad93fcabb3567edd2cc9fa38c57fc3c5da7c52d92",
        "31_extensions_mixed.dcf": "0f8998f5e08a42470b53a28b8e6b2ab65a78fa7c37b001f1442ad5d503736f8b",
        "31_extensions_mixed.json": "60e81afd35d52341682f90813862426dda74fa5b474e2b754c37804ca10f9511",
        "32_unknown_critical.dcf": "bb4f6817db58cdd6928dd977cd3e6a53c40b5882acf2da4af18c3168342154d7",
        "32_unknown_critical.json": "716fcf2486e62b89c0a6c023566bd3d7ad082b265243b24b268295d1eabf4d30",
    },
    "1.2": {
        "33_float8_raw.dcf": "de8d24845350fa427816d49fa7f9a78c59d8794b48116faedcf2725b6d17fb25",
        "33_float8_raw.json": "25f5acec65cdef0d41df2bd502d68607aec3a8f56e9a2d05c2b582d6bd83235e",
        "34_float8_codes.dcf": "22ef3e553ee6c967b11cd6bbc003407525fde34fbd8906ede1c4e2f7f39094a4",
        "34_float8_codes.json": "0f0923c3d7be8bcc8df878da621932016aa17fccec58cf323d87a4984ee17e7d",
        "35_float8_codebook.dcf": "4bca61f3d37fee313c5ea5df1623ff9d155043d0c15e3b0ced6dca01a5dbf8d7",
        "35_float8_codebook.json": "7c1c32e9b3df4547a85f24402a12347d08dd2dc0da67cbbde7280f5f6f6c4c33",
        "36_float8_in_1_1.dcf": "2ddabc50b1970b221d5c8f510f19ac4e4400d4e6a53a33ae4845e816ebd28bb0",
        "36_float8_in_1_1.json": "e99037a95f4c728153c1c388d2acae18a312d0ec64fba4df421b9ab18c221101",
        "37_float8_in_1_0.dcf": "911b363f8df61992b0b569ab6331265cf7809d151dfea57192894993738d4b84",
        "37_float8_in_1_0.json": "b05dec10877fff9bbcaf3801d320c2a15e7c29e17f3a17e551da989c5797da8b",
        "38_float8_codebook_mismatch.dcf": "9066b264709e4889005b46d69e5adce4ae291bf2584badb49e666c2b66cd8e8b",
        "38_float8_codebook_mismatch.json": "5dac1ded8d04697f8e5d39624d6f912fef1ebc9045f7f530fd15a73be919bab8",
    },
}


def _directory(version: str) -> pathlib.Path:
    return VECTORS if version == "1.0" else VECTORS / version


def test_every_vector_is_frozen():
    """A vector added without an entry here (or one removed) fails: vectors are added once, with
    their hash, and kept."""
    on_disk = {p.name for p in VECTORS.iterdir() if p.suffix in (".dcf", ".json")}
    assert on_disk == set(FROZEN["1.0"])
    versions = {p.name for p in VECTORS.iterdir() if p.is_dir()}
    assert versions <= set(FROZEN), f"vector directories without frozen hashes: {versions - set(FROZEN)}"


@pytest.mark.parametrize("version, name", [(v, n) for v, files in FROZEN.items() for n in sorted(files)])
def test_vector_bytes_never_change(version, name):
    data = (_directory(version) / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == FROZEN[version][name], (
        f"{version}/{name} changed: released vectors are never regenerated (spec §10)")


@pytest.mark.parametrize("version, name", [(v, n[:-4]) for v, files in FROZEN.items() for n in sorted(files)
                                           if n.endswith(".dcf")])
def test_every_released_version_stays_readable(version, name):
    """Each vector of each released version decodes to what its JSON says, by this reader."""
    directory = _directory(version)
    data = (directory / f"{name}.dcf").read_bytes()
    spec = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
    if "expect_error" in spec:  # a vector every decoder must refuse (spec/vectors/README.md)
        with pytest.raises(CorruptFileError, match=spec["expect_error"]):
            dcformat.DCFReader(data)
        return
    with dcformat.DCFReader(data) as f:
        assert f.header.version == tuple(int(x) for x in version.split("."))
        assert f.keys() == list(spec["expected"])
        for key, expected in spec["expected"].items():
            want = array_from_json(expected)
            got = f.get_tensor(key)
            assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()
        for attachment, content in spec.get("attachments", {}).items():
            assert f.get_attachment(attachment).hex() == content["data_hex"]
        f.verify_all()


def test_this_writer_writes_the_current_version():
    """1.1 when the file has an extension record (spec §4.6), 1.2 when it has a float8 tensor
    (§4.3), 1.0 otherwise (byte for byte)."""
    import ml_dtypes

    data = dcformat.save({"a": np.ones(2, np.float32)})
    assert struct.unpack_from("<HH", data, 4) == (VERSION_MAJOR, 0) == (1, 0)
    tied = dcformat.save({"a": np.ones(2, np.float32)}, aliases={"b": "a"})
    assert struct.unpack_from("<HH", tied, 4) == (VERSION_MAJOR, EXTENSIONS_MINOR) == (1, 1)
    fp8 = dcformat.save({"a": np.ones(2, ml_dtypes.float8_e5m2)}, aliases={"b": "a"})
    assert struct.unpack_from("<HH", fp8, 4) == (VERSION_MAJOR, VERSION_MINOR) == (1, 2)
    assert dcformat.FORMAT_VERSION == (1, 2)


def _with_version(major, minor):
    """Vector 04 relabelled: from 1.1 on an index ends with the extension section (spec §3.1),
    here one without a record."""
    data = bytearray((VECTORS / "04_csr_codebook_huffman.dcf").read_bytes())
    if major == 1 and minor >= 1:
        model = fh.parse_model(bytes(data))
        model.minor = minor  # serialize writes the empty extension section of 1.1 on
        return fh.serialize(model)
    struct.pack_into("<HH", data, 4, major, minor)
    return bytes(data)


@pytest.mark.parametrize("major", [0, 2, 3, 10, 255, 0xFFFF])
@pytest.mark.parametrize("minor", [0, 1, 0xFFFF])
def test_other_major_versions_are_refused_by_name(major, minor):
    with pytest.raises(UnsupportedVersionError, match=rf"version {major}\.{minor} is not supported") as caught:
        dcformat.DCFReader(_with_version(major, minor))
    assert f"{VERSION_MAJOR}.x" in str(caught.value)  # and says what this reader implements
    with pytest.raises(UnsupportedVersionError):
        dcformat.load(_with_version(major, minor))


@pytest.mark.parametrize("minor", [1, 2, 9, 100, 0xFFFF])
def test_newer_minor_versions_are_read(minor):
    """A newer minor version adds enum values and extension records: a file that uses none of
    them decodes as 1.0 (its index ending with an empty extension section, spec §3.1)."""
    want = dcformat.load(_with_version(1, 0))
    with dcformat.DCFReader(_with_version(1, minor)) as f:
        assert f.header.version == (1, minor)
        for name, array in want.items():
            assert np.array_equal(f.get_tensor(name), array)


@pytest.mark.parametrize("field, value, words", [
    ("dtype", 14, "dtype"),
    ("codec", 5, "codec"),
    ("layout", 2, "layout"),
    ("value_coding", 2, "value coding"),
    ("codebook_dtype", 3, "codebook dtype"),
])
def test_newer_minor_version_with_an_unknown_enum_value(field, value, words):
    """The unknown value is refused, and the message names it (a newer minor version's reader
    would know it)."""
    model = fh.parse_model((VECTORS / "04_csr_codebook_huffman.dcf").read_bytes())
    model.minor = 1
    t = model.tensors[0]
    if field == "codec":
        t.chunks[0].streams[0].codec = value
    else:
        setattr(t, field, value)
    with pytest.raises(CorruptFileError, match=rf"{words}.* {value}"):
        dcformat.load(fh.serialize(model))
