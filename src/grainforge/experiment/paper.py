"""Every number the report quotes from the paper (docs/design.md §9.2), in one place."""

from __future__ import annotations

#: Table 3, (MAP, ARI) per training setting (100 % of each kind of data).
PAPER_TABLE3 = {"real": (0.5845, 0.8655), "simulated-plain": (0.1120, 0.0778), "real+simulated-plain": (0.5036, 0.7522)}
#: Table 4, real fraction -> ((MAP, ARI) real only, (MAP, ARI) real + synthetic or None).
PAPER_TABLE4 = {
    0.05: ((0.4808, 0.7351), (0.5599, 0.8368)),
    0.10: ((0.5055, 0.7740), (0.5721, 0.8508)),
    0.15: ((0.5311, 0.8002), (0.5742, 0.8534)),
    0.20: ((0.5418, 0.8300), (0.5823, 0.8577)),
    0.25: ((0.5343, 0.8316), (0.5792, 0.8696)),
    0.30: ((0.5479, 0.8370), (0.5863, 0.8630)),
    0.35: ((0.5585, 0.8358), (0.5860, 0.8749)),
    1.00: (PAPER_TABLE3["real"], None),
}
#: Supplement, (MAP, ARI) of a U-Net trained and tested on a synthetic train/test split.
PAPER_SUPPLEMENT = (0.9591, 0.9986)
#: Table 1, seconds per image of each kind.
PAPER_TABLE1_S = {"real": 1200.0, "simulated": 12.0, "synthetic": 0.1}
#: Table 1's image size (pixels): measured times are scaled to it by pixel count.
PAPER_IMAGE_PIXELS = 400 * 400
#: Largest real fraction the paper's claim (real + synthetic matches real 100 %) is about.
CLAIM_MAX_FRACTION = 0.35
