"""Generate a fixed set of labelled captchas (captcha==0.7.1's ImageCaptcha, 160x60, 4 characters) as an .npz.

The captcha package's noise is not seedable, so a set is generated once and stored: ``image`` (N, 3, 60, 160)
float32 BGR 0..255 (captcha-whisperer's preprocessing) and ``labels`` (N,) strings.

    python bench/captcha_data.py OUT.npz N
"""

from __future__ import annotations

import random
import sys

import numpy as np
from captcha.image import ImageCaptcha

CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def main(out: str, n: int, seed: int = 0) -> None:
    rnd = random.Random(seed)  # the texts are seeded; the package's drawing noise is not
    gen = ImageCaptcha(width=160, height=60)
    images, labels = [], []
    for _ in range(n):
        text = "".join(rnd.choice(CHARS) for _ in range(4))
        rgb = np.asarray(gen.generate_image(text).convert("RGB").resize((160, 60)), np.float32)
        images.append(np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1)))
        labels.append(text)
    np.savez_compressed(out, image=np.stack(images).astype(np.uint8), labels=np.array(labels))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
