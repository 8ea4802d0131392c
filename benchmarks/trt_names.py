"""The names TensorRT's Python bindings export, per version, read from the wheels without importing them.

TensorRT cannot be installed where cp_debug is built (PyPI's `tensorrt-cu12/13-libs` download from NVIDIA), but
the `tensorrt-cu12-bindings` / `tensorrt-cu13-bindings` wheels are plain binaries: their extension module is a
pybind11 module, and pybind11 registers every class, method, property and enum value by a name held as a string
literal in the module. This script downloads a few versions, reads those strings, and writes one compact list per
version (`tests/data/trt_names/<version>.txt.gz`, the wheel's file name and sha256 in its header), which
`tests/backends/test_trt_names.py` checks our runner and its polygraphy calls against, offline.

Run from the repo root (PyPI reachable; nothing is imported from the wheels):
    python benchmarks/trt_names.py [--versions 10.0.1 10.8.0.43 10.16.1.11 11.0.0.114 11.4.0.106] [--work DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VERSIONS = ("10.0.1", "10.8.0.43", "10.16.1.11", "11.0.0.114", "11.4.0.106")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64")  # 10.0.1 was published for manylinux_2_17 only
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "trt_names"
# A name pybind11 registers is a C string of its own (`py::class_<…>(m, "Builder")`, `.def("mark_debug", …)`,
# `.value("FP16", …)`): a whole NUL-terminated string that is a Python identifier. Words inside docstrings are not
# whole strings, so a name a docstring merely mentions is not listed. Mangled C++ symbols (`_Z…`) are dropped; the
# module's other C strings that happen to be identifiers (symbol names) stay: they cannot be mistaken for ours.
# The linker keeps one copy of a string that ends another (`unmark_debug` holds `mark_debug`, `UINT8` holds `INT8`):
# the check (tests/backends/test_trt_names.py) counts a name as present where it ends a listed name.
_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{0,79}")
# Itanium-mangled type names and pybind11 signature fragments (`N8nvinfer…E`, `FN8pybind113strE…`): not names.
_MANGLED = re.compile(rb"^_Z|\d(?:nvinfer|tensorrt|pybind|v_1_0)|St\d|^N?St|^P?F[A-Za-z0-9_]*E$")


def download(version: str, work: Path) -> Path:
    """The bindings wheel of `version` for CPython 3.11 on x86-64 Linux (cu12 first, then cu13 for 11.x; the
    newer manylinux tag first)."""
    packages = ["tensorrt-cu12-bindings"] + (["tensorrt-cu13-bindings"] if version.startswith("11.") else [])
    dest = work / version
    dest.mkdir(parents=True, exist_ok=True)
    errors = []
    for package in packages:
        for platform in PLATFORMS:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                   "3.11", "--platform", platform, f"{package}=={version}", "-d", str(dest)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(dest.glob("*.whl"))
            if done.returncode == 0 and wheels:
                return wheels[0]
            errors.append(f"{package} {platform}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    raise SystemExit(f"no bindings wheel for TensorRT {version}: {'; '.join(errors)}")


def extension_names(wheel: Path) -> tuple[str, set[str]]:
    """(member, names): the wheel's `tensorrt*.so` extension module and the identifiers its strings hold."""
    with zipfile.ZipFile(wheel) as z:
        members = [m for m in z.namelist() if re.search(r"/tensorrt[^/]*\.so[.0-9]*$", m)]
        if not members:
            raise SystemExit(f"{wheel.name} holds no tensorrt*.so extension module")
        member = sorted(members, key=len)[0]
        blob = z.read(member)
    names = {s.decode() for s in blob.split(b"\0") if _IDENT.fullmatch(s) and not _MANGLED.search(s)}
    return member, names


def write_list(version: str, wheel: Path, member: str, names: set[str], out: Path) -> Path:
    """`out/<version>.txt.gz`: a header (wheel, sha256, module), then one name per line, sorted."""
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    head = [f"# wheel: {wheel.name}", f"# sha256: {sha}", f"# module: {member}", f"# names: {len(names)}"]
    text = "\n".join(head + sorted(names)) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{version}.txt.gz"
    from cp_debug.files import write_bytes_atomic

    write_bytes_atomic(path, gzip.compress(text.encode(), mtime=0))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", nargs="+", default=list(VERSIONS))
    ap.add_argument("--work", type=Path, default=None, help="download folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for version in args.versions:
            wheel = download(version, work)
            member, names = extension_names(wheel)
            path = write_list(version, wheel, member, names, args.out)
            print(f"{version}: {wheel.name} → {path} ({len(names)} names, {path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
