"""Perturb each noise source by 5 %, run the noise tests, record pass/fail, revert."""
import subprocess, sys, pathlib
root = pathlib.Path("/work/wt/i10b")
P = [
 ("session bank x1.05", "anacompile/runtime/session.py",
  'bank = noise_bank(self._bank_size, chip_rng(self.seed, self.chip_seed, "bank"))',
  'bank = noise_bank(self._bank_size, chip_rng(self.seed, self.chip_seed, "bank")) * np.float32(1.05)'),
 ("session bank x0.95", "anacompile/runtime/session.py",
  'bank = noise_bank(self._bank_size, chip_rng(self.seed, self.chip_seed, "bank"))',
  'bank = noise_bank(self._bank_size, chip_rng(self.seed, self.chip_seed, "bank")) * np.float32(0.95)'),
 ("session out-noise sigma x1.05", "anacompile/runtime/session.py",
  'tile_constants(self.periphery)["noise_std"]', 'tile_constants(self.periphery)["noise_std"] * 1.05'),
 ("in-graph 1/f read noise x1.05", "anacompile/runtime/functions.py",
  'b.op("Abs", g_drift), q), bw), xi)', 'b.op("Abs", g_drift), q), bw), b.op("Mul", xi, b.const(1.05)))'),
 ("in-graph 1/f read noise x0.95", "anacompile/runtime/functions.py",
  'b.op("Abs", g_drift), q), bw), xi)', 'b.op("Abs", g_drift), q), bw), b.op("Mul", xi, b.const(0.95)))'),
 ("in-graph per-MVM read noise x1.05", "anacompile/runtime/functions.py",
  'b.op("Mul", b.op("Sqrt", var), xi)', 'b.op("Mul", b.op("Mul", b.op("Sqrt", var), xi), b.const(1.05))'),
 ("in-graph output noise x1.05", "anacompile/runtime/functions.py",
  'b.op("Mul", b.attr_const("noise_std"), xi)', 'b.op("Mul", b.op("Mul", b.attr_const("noise_std"), xi), b.const(1.05))'),
]
tests = sys.argv[1:] or ["tests/runtime", "tests/devices"]
for name, f, old, new in P:
    path = root / f
    text = path.read_text()
    assert text.count(old) == 1, (name, text.count(old))
    path.write_text(text.replace(old, new))
    try:
        r = subprocess.run([str(root / ".venv/bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                           cwd=root, capture_output=True, text=True)
    finally:
        path.write_text(text)
    failed = [l.split(" - ")[0] for l in r.stdout.splitlines() if l.startswith("FAILED")]
    summary = r.stdout.strip().splitlines()[-1]
    print(f"## {name}: rc={r.returncode}; {summary}")
    for l in failed:
        print("   ", l)
    sys.stdout.flush()
