"""Perturb each noise source by 5 %, run the noise tests, report which fail, and revert.

Run from the repository root: ``.venv/bin/python bench/perturb_noise_sources.py [TEST PATHS]`` (default
``tests/runtime tests/devices``). Every perturbation must make at least one test fail (issue 10: a 5 % change in
the session's per-MVM noise or in the in-graph 1/f read noise fails the suite). The source file is restored
after each run, also on error.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BANK = "bank = noise_bank(self._bank_size, bank_rng(self.seed, self._bank_size))"
ONE_OVER_F = 'b.op("Abs", g_drift), q), bw), xi)'
PERTURBATIONS = [
    ("session bank x1.05", "anacompile/runtime/session.py", BANK, BANK + " * np.float32(1.05)"),
    ("session bank x0.95", "anacompile/runtime/session.py", BANK, BANK + " * np.float32(0.95)"),
    (
        "session out-noise sigma x1.05",
        "anacompile/runtime/session.py",
        "tile_constants(self.periphery).noise_std",
        "tile_constants(self.periphery).noise_std * 1.05",
    ),
    (
        "in-graph 1/f read noise x1.05",
        "anacompile/crossbar/functions.py",
        ONE_OVER_F,
        'b.op("Abs", g_drift), q), bw), b.op("Mul", xi, b.const(1.05)))',
    ),
    (
        "in-graph 1/f read noise x0.95",
        "anacompile/crossbar/functions.py",
        ONE_OVER_F,
        'b.op("Abs", g_drift), q), bw), b.op("Mul", xi, b.const(0.95)))',
    ),
    (
        "in-graph per-MVM read noise x1.05",
        "anacompile/crossbar/functions.py",
        'z_k = b.op("Add", z_k, b.op("Mul", b.op("Sqrt", var), xi))',
        'z_k = b.op("Add", z_k, b.op("Mul", b.op("Mul", b.op("Sqrt", var), xi), b.const(1.05)))',
    ),
    (
        "conv without patches: fed noise x1.05",
        "anacompile/crossbar/functions.py",
        'lambda k, z_k: b.op("Reshape", "noise_bank", b.op("Shape", z_k))',
        'lambda k, z_k: b.op("Mul", b.op("Reshape", "noise_bank", b.op("Shape", z_k)), b.const(1.05))',
    ),
    (
        "in-graph output noise x1.05",
        "anacompile/crossbar/functions.py",
        'b.op("Mul", b.attr_const("noise_std"), xi)',
        'b.op("Mul", b.op("Mul", b.attr_const("noise_std"), xi), b.const(1.05))',
    ),
]


def main(tests: list[str]) -> int:
    undetected = 0
    for name, file, old, new in PERTURBATIONS:
        path = ROOT / file
        text = path.read_text()
        if text.count(old) != 1:
            print(f"## {name}: the source line to perturb was not found once in {file}; update this script")
            undetected += 1
            continue
        path.write_text(text.replace(old, new))
        try:
            run = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            path.write_text(text)
        failed = [line.split(" - ")[0] for line in run.stdout.splitlines() if line.startswith("FAILED")]
        lines = run.stdout.strip().splitlines()
        print(f"## {name}: rc={run.returncode}; {lines[-1] if lines else ''}")
        for line in failed:
            print("   ", line)
        undetected += run.returncode == 0
        sys.stdout.flush()
    return 1 if undetected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["tests/runtime", "tests/devices"]))
