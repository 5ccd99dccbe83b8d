"""The .rcc reader, the DEP-5 licence look-up and the file naming of scripts/prepare_photos.py (no network)."""

import importlib.util
import struct
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_photos.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prepare_photos", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


prepare_photos = _load_script()

FILES = {
    "top.txt": b"uncompressed at the root",
    "dir/packed.bin": b"compressible " * 50,
    "dir/plain.webp": bytes(range(256)),
}
COMPRESSED = {"dir/packed.bin"}


def qt_hash(name: str) -> int:
    """Qt's `qt_hash` of a resource name, over its UTF-16 code units."""
    value = 0
    units = name.encode("utf-16-be")
    for index in range(0, len(units), 2):
        value = (value << 4) + int.from_bytes(units[index : index + 2], "big")
        value ^= (value & 0xF0000000) >> 23
        value &= 0x0FFFFFFF
    return value


def write_rcc(files: dict[str, bytes], compressed: set[str], version: int) -> bytes:
    """A minimal `rcc -binary` writer: header, data table, names table, then the tree (breadth first)."""
    root: dict = {}
    for path, contents in files.items():
        *directories, name = path.split("/")
        node = root
        for directory in directories:
            node = node.setdefault(directory, {})
        node[name] = contents

    data, names, tree = bytearray(), bytearray(), bytearray()
    nodes: list[tuple[str, dict | bytes, str]] = [("", root, "")]  # (name, children or contents, full path)
    for name, content, path in nodes:  # `nodes` grows while iterating: breadth-first order
        if name:
            name_offset = len(names)
            names += struct.pack(">HI", len(name), qt_hash(name)) + name.encode("utf-16-be")
        else:
            name_offset = 0
        if isinstance(content, dict):
            first_child = len(nodes)
            for child in sorted(content, key=qt_hash):
                nodes.append((child, content[child], f"{path}/{child}" if path else child))
            tree += struct.pack(">IHII", name_offset, prepare_photos.RCC_FLAG_DIRECTORY, len(content), first_child)
        else:
            is_compressed = path in compressed
            payload = struct.pack(">I", len(content)) + zlib.compress(content) if is_compressed else content
            flags = prepare_photos.RCC_FLAG_COMPRESSED if is_compressed else 0
            tree += struct.pack(">IHHHI", name_offset, flags, 0, 1, len(data))
            data += struct.pack(">I", len(payload)) + payload
        if version >= 2:
            tree += struct.pack(">Q", 1_700_000_000_000)  # modification time, ms since the epoch

    header_size = 24 if version >= 3 else 20
    data_offset = header_size
    names_offset = data_offset + len(data)
    tree_offset = names_offset + len(names)
    header = b"qres" + struct.pack(">IIII", version, tree_offset, data_offset, names_offset)
    if version >= 3:
        header += struct.pack(">I", prepare_photos.RCC_FLAG_COMPRESSED)  # overall flags
    return header + bytes(data) + bytes(names) + bytes(tree)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_round_trip(version: int):
    blob = write_rcc(FILES, COMPRESSED, version)
    index = prepare_photos.parse_rcc(blob)
    assert set(index) == set(FILES)
    assert index["dir/packed.bin"].flags & prepare_photos.RCC_FLAG_COMPRESSED
    assert not index["dir/plain.webp"].flags & prepare_photos.RCC_FLAG_COMPRESSED
    for path, contents in FILES.items():
        assert prepare_photos.read_rcc_file(blob, index[path]) == contents


def test_rcc_rejects_bad_headers_and_corruption():
    blob = write_rcc(FILES, COMPRESSED, 3)
    with pytest.raises(ValueError, match="magic"):
        prepare_photos.parse_rcc(b"nope" + blob[4:])
    with pytest.raises(ValueError, match="version 9"):
        prepare_photos.parse_rcc(blob[:4] + struct.pack(">I", 9) + blob[8:])
    with pytest.raises(ValueError, match="Corrupt"):
        prepare_photos.parse_rcc(blob[: len(blob) - 10])
    looping_root = bytearray(blob)
    tree_offset = int.from_bytes(blob[8:12], "big")
    looping_root[tree_offset + 10 : tree_offset + 14] = struct.pack(">I", 0)  # root's first child is itself
    with pytest.raises(ValueError, match="twice"):
        prepare_photos.parse_rcc(bytes(looping_root))


def test_rcc_zstd_entry_without_a_decompressor_errors_clearly(monkeypatch: pytest.MonkeyPatch):
    blob = write_rcc({"a.bin": b"\x28\xb5\x2f\xfd"}, set(), 3)
    entry = prepare_photos.parse_rcc(blob)["a.bin"]
    zstd_entry = prepare_photos.RccFile(flags=prepare_photos.RCC_FLAG_COMPRESSED_ZSTD, data_offset=entry.data_offset)
    monkeypatch.setattr(prepare_photos.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="zstd"):
        prepare_photos.read_rcc_file(blob, zstd_entry)


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: images/*.jpg
       extra/photo?.png
Copyright: 2021 A Photographer
           2022 Another One
License: CC-BY-4.0
 Long licence text, not part of the short name.

License: GPL-2+
 The GPL text.
"""


def test_dep5_licence_lookup():
    copyright_file = prepare_photos.CopyrightFile(COPYRIGHT, "usr/share/doc/demo/copyright")
    # A glob matches a trailing part of the installed path; the last matching paragraph wins.
    photo = copyright_file.lookup("usr/share/demo/images/sub/cat.jpg")
    assert photo.licence == "CC-BY-4.0"
    assert photo.copyright == "2021 A Photographer / 2022 Another One"
    assert photo.basis == "usr/share/doc/demo/copyright, Files: images/*.jpg"
    assert copyright_file.lookup("usr/share/demo/extra/photo1.png").licence == "CC-BY-4.0"
    assert copyright_file.lookup("usr/share/demo/extra/photo12.png").licence == "GPL-2+"
    assert copyright_file.lookup("usr/share/demo/images.jpg").licence == "GPL-2+"


def test_dep5_file_name_fallback_and_non_machine_readable():
    without_catch_all = COPYRIGHT.replace("Files: *\n", "Files: debian/*\n").replace(
        "extra/photo?.png", "16.04/Bridge.jpg"
    )
    by_name = prepare_photos.CopyrightFile(without_catch_all, "c").lookup("usr/share/backgrounds/Bridge.jpg")
    assert (by_name.licence, by_name.basis) == ("CC-BY-4.0", "c, Files: 16.04/Bridge.jpg, by file name")

    free_form = prepare_photos.CopyrightFile("This package is GPL.\n\nLicense: GPL-3+\n", "c")
    assert free_form.lookup("usr/share/x.png").licence == "one of: GPL-3+"


def test_output_names_are_flat_and_unique():
    name = prepare_photos.output_name("scikit-image (PyPI)", "skimage/data/astronaut.png")
    assert name == "scikit-image-PyPI__skimage__data__astronaut.png.png"
    assert prepare_photos.output_name("opencv-doc", "usr/share/x/data/../text/a.jpg") == (
        "opencv-doc__usr__share__x__text__a.jpg.png"
    )
    assert prepare_photos.output_name("gcompris-qt-data", "rcc:gcompris/a b.webp") == (
        "gcompris-qt-data__gcompris__a-b.webp.png"
    )
