"""Device files for tests: PCM with its noise switched off, or with drift only."""

NOISELESS_DEVICE = """
base: pcm
name: pcm-noiseless
programming: {coefficients_us: [0.0, 0.0, 0.0]}
read_noise: {q_coefficient: 0.0}
"""
"""PCM without programming or read noise (drift is the identity at t = 0)."""

DRIFT_ONLY_DEVICE = """
base: pcm
programming: {coefficients_us: [0.0, 0.0, 0.0]}
read_noise: {q_coefficient: 0.0}
drift: {mu_bounds: [0.06, 0.06], sigma_bounds: [0.0, 0.0]}
"""
"""PCM whose only effect is drift with one exponent nu = 0.06 for every device."""
