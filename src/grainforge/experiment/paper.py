"""Every number the report quotes from the paper (docs/design.md §9.2), in one place."""

from __future__ import annotations

#: Table 3, (MAP, ARI) per training setting (100 % of each kind of data); its simulated images are grain-ID
#: sections (pixel values in [0, N], its Fig. 1d).
PAPER_TABLE3 = {"real": (0.5845, 0.8655), "simulated-ids": (0.1120, 0.0778), "real+simulated-ids": (0.5036, 0.7522)}
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
#: Supplement, (MAP, ARI) of a U-Net trained and tested on simulated images split train : test 2.8 : 1.
PAPER_SUPPLEMENT = (0.9591, 0.9986)
#: Table 1, seconds per image of each kind.
PAPER_TABLE1_S = {"real": 1200.0, "simulated": 12.0, "synthetic": 0.1}
#: Table 1's image size (pixels): measured times are scaled to it by pixel count.
PAPER_IMAGE_PIXELS = 400 * 400
#: Largest real fraction the paper's claim (real + synthetic matches real 100 %) is about.
CLAIM_MAX_FRACTION = 0.35

#: The paper's protocol, as ``experiment paper --dry-run`` must reproduce it (tests/test_paper_preset.py
#: compares them one by one). Counts of images and patches, U-Net and pix2pix hyper-parameters.
PAPER_PROTOCOL = {
    "real images": 136,
    "real train images": 100,
    "real test images": 36,
    "real image size px": (2800, 1600),
    "test tile px": 400,
    "test tiles": 1008,                 # 36 images x 28 tiles of 400 x 400
    "training patches": 2800,
    "training patch px": 400,
    "simulated images": 28800,
    "simulated image px": 400,
    "real fractions": (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 1.0),
    "supplement train : test": 2.8,
    "unet iterations": 28000,
    "unet batch": 8,
    "unet real per mixed batch": 4,
    "unet lr": 1e-4,
    "unet final weights": True,         # no validation hold-out, no best-checkpoint selection
    "pix2pix crop px": 256,
    "pix2pix ngf": 64,
    "pix2pix ndf": 64,
    "pix2pix batch": 1,
    "pix2pix epochs": 200,              # 100 at constant lr + 100 decaying linearly to 0
    "pix2pix lr": 2e-4,
    "pix2pix beta1": 0.5,
    "pix2pix lambda L1": 100.0,
    "pix2pix iterations at 100 %": 560000,  # 200 epochs x 2800 patches at batch 1
    "pix2pix inference": "train-mode batch norm, dropout on",  # the reference's test.py without --eval
}
#: Items of :data:`PAPER_PROTOCOL` the built-in demo data cannot match: it renders square images (1600 px
#: in the paper config), the paper's are 2800 x 1600, so 16 test tiles per image instead of 28.
DEMO_DEVIATIONS = ("real image size px", "test tiles")


def fraction_plan(config) -> list[dict]:
    """Per real fraction of an experiment config: training images, training patches (None without a
    fixed patch set) and pix2pix iterations. Counts need the training image names, known in advance
    only for the built-in demo (None elsewhere: they are read at run time)."""
    import math

    from grainforge.data.split import nested_fraction
    from grainforge.data.torchdata import patch_counts
    from grainforge.experiment.config import BUILTIN_DEMO, style_config
    from grainforge.microscope import demo_split

    real, style = config.real, style_config(config)
    train = demo_split(real.demo_images, real.split_seed, real.test_fraction)[0] if real.source == BUILTIN_DEMO else None
    counts = patch_counts(train, real.patches) if train and real.patches else None
    plan = []
    for fraction in sorted(set(config.fractions) | {1.0}):
        names = nested_fraction(train, fraction, real.split_seed) if train else None
        patches = sum(counts[n] for n in names) if counts else None
        items = patches if patches is not None else (len(names) if names else None)
        iters = style.iters if style.epochs is None else (
            style.epochs * math.ceil(items / style.batch_size) if items is not None else None)
        plan.append({"fraction": fraction, "images": len(names) if names else None, "patches": patches,
                     "pix2pix_iterations": iters})
    return plan


def protocol(config) -> dict:
    """The values of :data:`PAPER_PROTOCOL` that an experiment config gives (None: known only at run time).

    Computed from the config alone (nothing is read, simulated or trained), so that
    ``experiment --dry-run`` and tests/test_paper_preset.py can compare them with the paper's."""
    from grainforge.experiment.config import BUILTIN_DEMO, segment_config, style_config

    real, sim, seg, style = config.real, config.simulation, segment_config(config), style_config(config)
    demo = real.source == BUILTIN_DEMO
    train_test = None
    if demo:
        from grainforge.microscope import demo_split

        train_test = [len(side) for side in demo_split(real.demo_images, real.split_seed, real.test_fraction)]
    tiles_per_test = (real.demo_size // real.test_tile) ** 2 if demo and real.test_tile else (1 if demo else None)
    side = round(sim.size * sim.zoom) if sim.zoom is not None else None
    planes = len(sim.axes) * len(range(0, sim.size, sim.stride))
    sections = None
    if not sim.match_mean_area:
        sections = planes * ((side or sim.size) // sim.crop) ** 2 if sim.crop else planes
    full = [p for p in fraction_plan(config) if p["fraction"] == 1.0][0]
    return {
        "real images": real.demo_images if demo else None,
        "real train images": train_test[0] if demo else None,
        "real test images": train_test[1] if demo else None,
        "real image size px": (real.demo_size, real.demo_size) if demo else None,
        "test tile px": real.test_tile,
        "test tiles": train_test[1] * tiles_per_test if demo else None,
        "training patches": real.patches,
        "training patch px": real.patch if real.patches else None,
        "simulated images": sections,
        "simulated image px": sim.crop,
        "real fractions": tuple(sorted(config.fractions)),
        "supplement train : test": config.supplement_ratio,
        "unet iterations": seg.iters,
        "unet batch": seg.batch_size,
        "unet real per mixed batch": round(seg.real_share * seg.batch_size),
        "unet lr": seg.lr if seg.lr_schedule == "constant" else f"{seg.lr:g} {seg.lr_schedule}",
        "unet final weights": seg.val_fraction == 0.0,
        "pix2pix crop px": style.crop,
        "pix2pix ngf": style.ngf,
        "pix2pix ndf": style.ndf,
        "pix2pix batch": style.batch_size,
        "pix2pix epochs": style.epochs,
        "pix2pix lr": style.lr,
        "pix2pix beta1": style.beta1,
        "pix2pix lambda L1": style.lambda_l1,
        "pix2pix iterations at 100 %": full["pix2pix_iterations"],
        "pix2pix inference": f"{'train-mode' if style.inference_batchnorm == 'batch' else 'running-statistics'} "
                             f"batch norm, dropout {'on' if style.inference_dropout else 'off'}",
    }
