#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Builds the offline photo set from Debian packages (and scikit-image's bundled data), as an imagefolder dataset.

    python scripts/prepare_photos.py --output_dir data/photos [--cache_dir data/debs]

Reads the photo manifest (package, path, width, height, split train/eval), downloads the Debian packages it names
with `apt-get download` into `--cache_dir`, unpacks them with `dpkg -x`, takes exactly the listed photos (those of
gcompris-qt-data from inside its Qt binary resource bundles, paths written `rcc:<path>`) and writes them, converted
to RGB PNG at their original resolution, to `<output_dir>/train/` and `<output_dir>/eval/`. Those folders hold only
the images, so `datasets.load_dataset("imagefolder", data_dir=output_dir, drop_labels=True)` loads them as the splits
`train` and `test` (`datasets` maps an `eval` folder to its `test` split; without `drop_labels=True` it adds a
meaningless `label` column named after the split folders).

`<output_dir>/manifest.json` records, for every written file: split, file, source package, source path, width,
height, licence, copyright and licence_basis (where they were read). Licences come from the package's
`usr/share/doc/<package>/copyright`: per file when it is in the machine-readable DEP-5 format (see
[`CopyrightFile.lookup`]), else all the licences it names. scikit-image's photos take theirs from the
`skimage.data` docstrings.

Idempotent: photos already written (and recorded in manifest.json) are skipped, as are downloaded .debs and finished
extractions; every run ends by checking the image counts per split against the manifest.
"""

import argparse
import functools
import glob
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

DEFAULT_MANIFEST = Path(__file__).with_name("photo_manifest.json")
SPLITS = ("train", "eval")
RECORD_FIELDS = ("split", "file", "package", "path", "width", "height", "licence", "copyright", "licence_basis")
"""The fields of each record of the output manifest.json, in order."""
PARTIAL_SUFFIX = ".partial.png"
RCC_PREFIX = "rcc:"
RCC_PACKAGE = "gcompris-qt-data"
RCC_DIR = "usr/share/gcompris-qt/rcc"
SKIMAGE_PACKAGE = "scikit-image (PyPI)"
SKIMAGE_IMAGE_LICENCES: dict[str, tuple[str, str]] = {
    "skimage/data/astronaut.png": ("public-domain", "NASA Great Images database (Eileen Collins)"),
    "skimage/data/rocket.jpg": ("public-domain", "SpaceX (launch of DSCOVR on Falcon 9)"),
    "skimage/data/chelsea.png": ("CC0-1.0", "Stefan van der Walt"),
    "skimage/data/retina.jpg": ("CC0-1.0", "Mikael Häggström (Wikimedia Commons)"),
    "skimage/data/motorcycle_left.png": (
        "unstated",
        "Middlebury 2014 stereo benchmark (Scharstein et al.), distributed with scikit-image",
    ),
}
"""`path -> (licence, copyright)` of scikit-image's bundled photos, as the docstrings of `skimage.data` state them
(its LICENSE.txt covers the code only)."""


# --------------------------------------------------------------------------------------------------------------------
# Qt binary resource (.rcc) reader
# --------------------------------------------------------------------------------------------------------------------

RCC_MAGIC = b"qres"
RCC_FLAG_COMPRESSED = 0x01  # zlib (qCompress): 4-byte big-endian uncompressed size, then a zlib stream
RCC_FLAG_DIRECTORY = 0x02
RCC_FLAG_COMPRESSED_ZSTD = 0x04  # one zstd frame


@dataclass(frozen=True)
class RccFile:
    """A file entry of an .rcc bundle: its tree flags and the absolute offset of its data record in the bundle."""

    flags: int
    data_offset: int


def _read_uint(blob: bytes, offset: int, size: int) -> int:
    if offset < 0 or offset + size > len(blob):
        raise ValueError(f"Corrupt .rcc data: read of {size} bytes at offset {offset} past the end ({len(blob)}).")
    return int.from_bytes(blob[offset : offset + size], "big")


def parse_rcc(blob: bytes) -> dict[str, RccFile]:
    """
    Indexes a Qt binary resource bundle (the output of `rcc -binary`, format versions 1-3).

    Layout (all integers big-endian): header `qres`, version (u32), then u32 offsets of the tree, data and names
    tables (version >= 3 adds a u32 of overall flags). A tree entry is name offset (u32), flags (u16), then for a
    directory the child count and the index of its first child (u32 each), for a file country (u16), language
    (u16) and data offset (u32); version >= 2 appends a u64 modification time. Entry 0 is the root directory. A name
    is its length in UTF-16 code units (u16), a hash (u32) and the UTF-16BE text. A data record is its size (u32)
    and the payload.

    Args:
        blob (`bytes`): the whole .rcc file.

    Returns:
        `dict[str, RccFile]`: every file, keyed by its full path inside the bundle (`"dir/sub/name.ext"`, no
        leading slash). When a path exists for several locales, the first entry wins.
    """
    if blob[:4] != RCC_MAGIC:
        raise ValueError(f"Not a Qt resource bundle: magic {blob[:4]!r}, expected {RCC_MAGIC!r}.")
    version = _read_uint(blob, 4, 4)
    if version not in (1, 2, 3):
        raise ValueError(f"Unsupported .rcc format version {version} (supported: 1-3).")
    tree, data, names = (_read_uint(blob, offset, 4) for offset in (8, 12, 16))
    entry_size = 14 if version == 1 else 22

    def name_of(node: int) -> str:
        name_offset = names + _read_uint(blob, tree + node * entry_size, 4)
        length = _read_uint(blob, name_offset, 2)
        start = name_offset + 6  # past the length and the hash
        if start + 2 * length > len(blob):
            raise ValueError(f"Corrupt .rcc data: name of entry {node} runs past the end.")
        return blob[start : start + 2 * length].decode("utf-16-be")

    files: dict[str, RccFile] = {}
    pending: list[tuple[int, str]] = [(0, "")]  # (node, parent path with trailing slash)
    visited: set[int] = set()
    while pending:
        node, parent = pending.pop()
        if node in visited:
            raise ValueError(f"Corrupt .rcc data: tree entry {node} is reached twice.")
        visited.add(node)
        entry = tree + node * entry_size
        flags = _read_uint(blob, entry + 4, 2)
        path = parent + name_of(node) if node else ""
        if flags & RCC_FLAG_DIRECTORY:
            child_count, first_child = _read_uint(blob, entry + 6, 4), _read_uint(blob, entry + 10, 4)
            pending.extend(
                (child, f"{path}/" if path else "") for child in range(first_child, first_child + child_count)
            )
        else:
            files.setdefault(path, RccFile(flags=flags, data_offset=data + _read_uint(blob, entry + 10, 4)))
    return files


def _zstd_decompress(payload: bytes) -> bytes:
    if importlib.util.find_spec("compression.zstd") is not None:  # Python >= 3.14
        from compression import zstd

        return zstd.decompress(payload)
    if importlib.util.find_spec("zstandard") is not None:
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(payload)
    raise RuntimeError("This .rcc entry is zstd-compressed: `pip install zstandard` (or use Python >= 3.14).")


def read_rcc_file(blob: bytes, entry: RccFile) -> bytes:
    """
    The contents of one file of a Qt resource bundle, decompressed.

    Args:
        blob (`bytes`): the whole .rcc file.
        entry (`RccFile`): the entry, from [`parse_rcc`] of the same blob.

    Returns:
        `bytes`: the file contents.
    """
    size = _read_uint(blob, entry.data_offset, 4)
    start = entry.data_offset + 4
    if start + size > len(blob):
        raise ValueError(f"Corrupt .rcc data: the record at offset {entry.data_offset} runs past the end.")
    payload = blob[start : start + size]
    if entry.flags & RCC_FLAG_COMPRESSED_ZSTD:
        return _zstd_decompress(payload)
    if entry.flags & RCC_FLAG_COMPRESSED:
        expected_size = _read_uint(payload, 0, 4)
        contents = zlib.decompress(payload[4:])
        if len(contents) != expected_size:
            raise ValueError(f"Corrupt .rcc data: {len(contents)} bytes inflated, {expected_size} announced.")
        return contents
    return payload


# --------------------------------------------------------------------------------------------------------------------
# Licences from debian/copyright (DEP-5)
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LicenceInfo:
    """A photo's licence short name(s), copyright holders, and what in which file they were read from."""

    licence: str
    copyright: str
    basis: str


def _dep5_paragraphs(text: str) -> list[dict[str, str]]:
    """Splits a DEP-5 file into paragraphs of `field -> value` (continuation lines joined with newlines)."""
    paragraphs: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    field = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                paragraphs.append(fields)
            fields, field = {}, None
        elif line[0] in " \t" and field is not None:
            fields[field] += "\n" + line.strip()
        elif ":" in line:
            field, value = line.split(":", 1)
            field = field.strip().lower()
            fields[field] = value.strip()
    if fields:
        paragraphs.append(fields)
    return paragraphs


@functools.cache
def _dep5_glob_regex(pattern: str) -> re.Pattern[str]:
    """DEP-5 globs: `*` matches any run of characters (slashes too), `?` one character, nothing else is special."""
    return re.compile("".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern))


class CopyrightFile:
    """Licence look-up in one package's `debian/copyright`."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.paragraphs = _dep5_paragraphs(text)
        self.machine_readable = bool(self.paragraphs) and "format" in self.paragraphs[0]
        self.package_licences = sorted(
            {paragraph["license"].splitlines()[0] for paragraph in self.paragraphs if paragraph.get("license")}
        )

    def _last_match(self, candidates: list[str], by_file_name: bool) -> tuple[dict[str, str], str] | None:
        """
        The last paragraph (DEP-5: the last match wins) with a `Files:` glob matching one of the candidate paths, and
        that glob. With `by_file_name`, a glob matches when its last component, free of wildcards, is a candidate.
        """
        match = None
        for paragraph in self.paragraphs:
            if not paragraph.get("license"):
                continue
            for glob_pattern in paragraph.get("files", "").split():
                if by_file_name:
                    matches = glob_pattern.rsplit("/", 1)[-1] in candidates and not set("*?") & set(glob_pattern)
                else:
                    matches = any(_dep5_glob_regex(glob_pattern).fullmatch(path) for path in candidates)
                if matches:
                    match = (paragraph, glob_pattern)
        return match

    def lookup(self, path: str) -> LicenceInfo:
        """
        The licence of one file of the package.

        DEP-5 `Files:` globs name paths of the upstream source tree, while `path` is where the file is installed, so
        a glob matches when it matches the whole path or any trailing part of it (`a/b/c.jpg`, `b/c.jpg`,
        `c.jpg`). Failing that (no catch-all `Files: *`), a glob without wildcards whose last component is the file
        name is taken, and `basis` says so. Without a DEP-5 file or any match, all the licences of the file are listed.
        """
        if self.machine_readable:
            parts = path.split("/")
            tails = ["/".join(parts[start:]) for start in range(len(parts))]
            for candidates, by_file_name, how in ((tails, False, ""), (parts[-1:], True, ", by file name")):
                match = self._last_match(candidates, by_file_name)
                if match is not None:
                    paragraph, glob_pattern = match
                    return LicenceInfo(
                        licence=paragraph["license"].splitlines()[0],
                        copyright=" / ".join(paragraph.get("copyright", "").splitlines()),
                        basis=f"{self.source}, Files: {glob_pattern}{how}",
                    )
        licences = " and ".join(self.package_licences) or "unknown"
        return LicenceInfo(
            licence=f"one of: {licences}", copyright=f"see {self.source}", basis=f"{self.source}, whole file"
        )


# --------------------------------------------------------------------------------------------------------------------
# Debian packages
# --------------------------------------------------------------------------------------------------------------------


def _cached_deb(cache_dir: Path, package: str) -> Path | None:
    debs = sorted(cache_dir.glob(f"{glob.escape(package)}_*.deb"))
    return debs[-1] if debs else None


def download_debs(packages: list[str], cache_dir: Path) -> dict[str, Path]:
    """`apt-get download`s the packages without a .deb in `cache_dir` (running `apt-get update` once on failure)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [package for package in packages if _cached_deb(cache_dir, package) is None]
    if missing:
        print(f"apt-get download {' '.join(missing)}", file=sys.stderr)
        command = ["apt-get", "download", *missing]
        if subprocess.run(command, cwd=cache_dir).returncode != 0:
            print("apt-get download failed; running apt-get update and retrying", file=sys.stderr)
            subprocess.run(["apt-get", "update"], check=True)
            subprocess.run(command, cwd=cache_dir, check=True)
    debs = {package: _cached_deb(cache_dir, package) for package in packages}
    absent = [package for package, deb in debs.items() if deb is None]
    if absent:
        raise FileNotFoundError(f"No .deb in {cache_dir} for {absent} after apt-get download.")
    return debs


def extract_deb(deb: Path, extract_root: Path, package: str) -> Path:
    """`dpkg -x` a .deb into `extract_root/<package>`, unless a marker says this very .deb was extracted there."""
    target = extract_root / package
    marker = extract_root / f"{package}.extracted"
    if marker.is_file() and marker.read_text() == deb.name and target.is_dir():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)
    marker.write_text(deb.name)
    return target


def resolve_inside(root: Path, relative_path: str) -> Path:
    """`root/relative_path` with symbolic links followed, refusing links that leave `root` (absolute targets)."""
    path = (root / relative_path).resolve()
    if not path.is_relative_to(root.resolve()):
        raise FileNotFoundError(f"{relative_path!r} resolves outside the package ({path}).")
    return path


# --------------------------------------------------------------------------------------------------------------------
# The photo set
# --------------------------------------------------------------------------------------------------------------------


def output_name(package: str, path: str) -> str:
    """Unique file name of a photo: `<package>__<path with "/" as "__">.png`, other odd characters as "-"."""
    clean_package = re.sub(r"[^A-Za-z0-9._-]+", "-", package).strip("-")
    clean_path = os.path.normpath(path.removeprefix(RCC_PREFIX)).replace("/", "__")
    return f"{clean_package}__{re.sub(r'[^A-Za-z0-9._-]+', '-', clean_path)}.png"


def load_manifest(path: Path) -> list[dict]:
    entries = json.loads(path.read_text())
    required = {"package", "path", "width", "height", "split"}
    for index, entry in enumerate(entries):
        if not required <= entry.keys() or entry["split"] not in SPLITS:
            raise ValueError(f"{path}: entry {index} lacks {sorted(required)} or has a split not in {SPLITS}: {entry}")
    names = Counter(output_name(entry["package"], entry["path"]) for entry in entries)
    duplicates = [name for name, count in names.items() if count > 1]
    if duplicates:
        raise ValueError(f"{path}: several entries map to the same file name: {duplicates[:5]}")
    return entries


class PhotoSource:
    """Reads the bytes of manifest photos from the extracted packages, their rcc bundles and scikit-image."""

    def __init__(self, package_roots: dict[str, Path]) -> None:
        self.package_roots = package_roots
        self._rcc_index: dict[str, tuple[Path, RccFile]] | None = None
        self._rcc_blobs: dict[Path, bytes] = {}
        self._copyrights: dict[str, CopyrightFile] = {}

    def _rcc_entry(self, path: str) -> tuple[bytes, RccFile]:
        if self._rcc_index is None:
            self._rcc_index = {}
            for bundle in sorted((self.package_roots[RCC_PACKAGE] / RCC_DIR).glob("*.rcc")):
                for file_path, entry in parse_rcc(bundle.read_bytes()).items():
                    self._rcc_index.setdefault(file_path, (bundle, entry))
        if path not in self._rcc_index:
            raise FileNotFoundError(f"Manifest photo {RCC_PREFIX}{path} is in no .rcc bundle of {RCC_PACKAGE}.")
        bundle, entry = self._rcc_index[path]
        if bundle not in self._rcc_blobs:
            self._rcc_blobs[bundle] = bundle.read_bytes()
        return self._rcc_blobs[bundle], entry

    def read(self, package: str, path: str) -> bytes:
        if package == SKIMAGE_PACKAGE:
            return resolve_inside(skimage_root(), path).read_bytes()
        if path.startswith(RCC_PREFIX):
            return read_rcc_file(*self._rcc_entry(path.removeprefix(RCC_PREFIX)))
        file_path = resolve_inside(self.package_roots[package], path)
        if not file_path.is_file():
            raise FileNotFoundError(f"Manifest photo {path} is missing from package {package} ({file_path}).")
        return file_path.read_bytes()

    def licence(self, package: str, path: str) -> LicenceInfo:
        if package == SKIMAGE_PACKAGE:
            if path in SKIMAGE_IMAGE_LICENCES:
                return LicenceInfo(*SKIMAGE_IMAGE_LICENCES[path], basis="skimage.data docstrings")
            return LicenceInfo("unstated", "see skimage.data", basis="not in skimage.data docstrings")
        if package not in self._copyrights:
            source = f"usr/share/doc/{package}/copyright"
            copyright_path = self.package_roots[package] / source
            text = copyright_path.read_text(errors="replace") if copyright_path.is_file() else ""
            self._copyrights[package] = CopyrightFile(text, source)
        return self._copyrights[package].lookup(os.path.normpath(path.removeprefix(RCC_PREFIX)))


def skimage_root() -> Path:
    """The directory holding the `skimage` package (paths of scikit-image photos start with `skimage/`)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The manifest lists scikit-image photos: `pip install scikit-image`.")
    return Path(spec.submodule_search_locations[0]).parent


def write_photo(contents: bytes, entry: dict, destination: Path) -> None:
    """Decodes a photo, checks its size against the manifest and writes it as RGB PNG (atomically)."""
    with Image.open(io.BytesIO(contents)) as image:
        if image.size != (entry["width"], entry["height"]):
            raise ValueError(
                f"{entry['package']}:{entry['path']} is {image.size[0]}x{image.size[1]}, "
                f"the manifest says {entry['width']}x{entry['height']}."
            )
        rgb = image.convert("RGB")
    partial = destination.with_suffix(PARTIAL_SUFFIX)
    rgb.save(partial, format="PNG")
    partial.replace(destination)


def verify(output_dir: Path, records: list[dict]) -> Counter:
    """Checks that each split folder holds exactly the recorded PNG files; returns the counts per split."""
    counts: Counter = Counter()
    for split in SPLITS:
        expected = {record["file"] for record in records if record["split"] == split}
        found = {f"{split}/{path.name}" for path in (output_dir / split).glob("*") if path.is_file()}
        if found != expected:
            raise RuntimeError(
                f"{output_dir / split}: {len(found)} files, expected {len(expected)} "
                f"(missing {sorted(expected - found)[:3]}, unexpected {sorted(found - expected)[:3]})."
            )
        counts[split] = len(found)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", type=Path, required=True, help="Where train/, eval/ and manifest.json go.")
    parser.add_argument("--cache_dir", type=Path, default=Path("data/debs"), help="Downloaded and extracted .debs.")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="The photo manifest (JSON list).")
    args = parser.parse_args(argv)
    start_time = time.perf_counter()

    entries = load_manifest(args.manifest)
    manifest_path = args.output_dir / "manifest.json"
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else []
    reusable = {record["file"]: record for record in previous if set(record) == set(RECORD_FIELDS)}
    for split in SPLITS:
        (args.output_dir / split).mkdir(parents=True, exist_ok=True)
        for partial in (args.output_dir / split).glob(f"*{PARTIAL_SUFFIX}"):  # left by an interrupted run
            partial.unlink()

    records: list[dict] = []
    todo: list[tuple[dict, str]] = []  # photos to write or to record
    for entry in entries:
        file = f"{entry['split']}/{output_name(entry['package'], entry['path'])}"
        if file in reusable and (args.output_dir / file).is_file():
            records.append(reusable[file])
        else:
            todo.append((entry, file))

    debian_packages = sorted({entry["package"] for entry, _ in todo} - {SKIMAGE_PACKAGE})
    debs = download_debs(debian_packages, args.cache_dir) if debian_packages else {}
    source = PhotoSource(
        {package: extract_deb(deb, args.cache_dir / "extracted", package) for package, deb in debs.items()}
    )

    written = 0
    for entry, file in tqdm(todo, desc="photos", unit="photo", disable=not todo):
        if not (args.output_dir / file).is_file():
            write_photo(source.read(entry["package"], entry["path"]), entry, args.output_dir / file)
            written += 1
        licence = source.licence(entry["package"], entry["path"])
        records.append(
            {
                "split": entry["split"],
                "file": file,
                "package": entry["package"],
                "path": entry["path"],
                "width": entry["width"],
                "height": entry["height"],
                "licence": licence.licence,
                "copyright": licence.copyright,
                "licence_basis": licence.basis,
            }
        )

    records.sort(key=lambda record: (SPLITS.index(record["split"]), record["file"]))
    manifest_path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    counts = verify(args.output_dir, records)
    licences = Counter(record["licence"] for record in records)
    print(
        f"{args.output_dir}: {counts['train']} train + {counts['eval']} eval photos ({written} written now) "
        f"in {time.perf_counter() - start_time:.1f} s; licences: {dict(licences.most_common())}"
    )


if __name__ == "__main__":
    main()
