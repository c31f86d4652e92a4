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
        assert re.search(rf"\| {dtype.value} \| {dtype.name} \|", SPEC), dtype
    for codec in c.Codec:
        assert f"{codec.name} ({codec.value})" in SPEC, codec
    assert "0 = DENSE, 1 = CSR" in SPEC and "0 = RAW, 1 = CODEBOOK" in SPEC
    assert "`89 44 43 46`" in SPEC and c.MAGIC == bytes.fromhex("89444346")
    assert f"| `version_major` | {c.VERSION_MAJOR} |" in SPEC
