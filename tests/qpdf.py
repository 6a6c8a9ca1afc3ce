"""``qpdf --check`` on a PDF the tests built: the packet must be a file that qpdf reads without
a single warning (the agency's tools are stricter than pypdf). qpdf is an OS package
(``apt-get install qpdf``, installed by ``.ci/run``); without it the check fails, it never
skips."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

QPDF_MISSING = "qpdf is not installed: apt-get install qpdf (.ci/run installs it)"


def qpdf_problems(pdf: bytes) -> str | None:
    """None when ``qpdf --check`` passes with no warning; else what qpdf said (exit code and
    its output). Raises RuntimeError when qpdf is not installed."""
    qpdf = shutil.which("qpdf")
    if qpdf is None:
        raise RuntimeError(QPDF_MISSING)
    with tempfile.TemporaryDirectory(prefix="gf-qpdf-") as folder:
        path = Path(folder) / "packet.pdf"
        path.write_bytes(pdf)
        done = subprocess.run(
            [qpdf, "--check", str(path)], capture_output=True, timeout=120, check=False
        )
    said = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    if done.returncode != 0 or "WARNING" in said.upper():
        return f"qpdf --check exit {done.returncode}: {said[-2000:]}"
    return None
