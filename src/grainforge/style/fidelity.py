"""Style-fidelity gate: do the synthetic micrographs look like the real ones they imitate?

The same statistics are taken of (image, boundary) pairs on both sides: of the real training pairs
(the reference, stored as ``reference_stats.json`` in the style model folder by ``train_style``) and of
generated images with the labels they were painted from (``train_style``'s sample labels,
``apply_style``'s labels). Images are float (H, W) grey levels in [0, 1], boundaries bool (H, W).

histogram  fraction of pixels per grey level k/255 (``GREY_BINS`` bins); two histograms are compared by
           their Wasserstein-1 distance in grey levels (``histogram_distance``).
profile    mean grey level vs Euclidean distance d = 0..``PROFILE_MAX_DISTANCE`` px (rounded) from the
           boundary's centre line (the skeleton of the label, so 4-px real labels and 1-px simulated ones
           are measured alike). From it: boundary contrast = grain plateau (mean over d >=
           ``PLATEAU_FROM``) minus the centre-line level, in grey levels (> 0: dark boundaries), and the
           line width = full width at half depth of the dip, px (``profile_features``).
spectrum   the 2-D power spectrum, not radially averaged, summed over ``SPECTRUM_TILE``-px tiles (half
           overlap, mean removed, Hann window) of all images (Welch; not judged with fewer than
           ``SPECTRUM_MIN_TILES`` tiles, whose noise makes peaks). A periodic artefact (a grid of
           dots, a checkerboard) puts narrow peaks on a lattice that real micrographs lack: the highest
           peak over its local background (x), the lattice period (px) and the share of the grey-level
           variance in the peaks (``spectral_peak``).

``gate`` compares, writes ``fidelity.json`` (every figure, the thresholds, the verdict), prints one
verdict line on stderr and returns the block for ``run.json``. The verdict is OK or WARN (or
UNCHECKED without a reference); it never stops a run. ``unet_f1_ratio`` is the slower, optional
check: boundary F1 of a U-Net on generated vs on real images of the same labels.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.signal.windows import hann
from scipy.stats import wasserstein_distance
from skimage.morphology import skeletonize

from grainforge.data.io import write_json
from grainforge.errors import UserError

REFERENCE_FILE = "reference_stats.json"  # in the style model folder
REPORT_FILE = "fidelity.json"            # beside the outputs of style train / style apply

GREY_BINS = 256             # histogram bins: grey levels k/255
PROFILE_MAX_DISTANCE = 10   # px: the profile covers d = 0..10 from the boundary centre line
PLATEAU_FROM = 6            # px: the profile at d >= 6 is the grain-interior plateau
SPECTRUM_TILE = 128         # px: side of the Welch tiles (images smaller than this add no spectrum)
SPECTRUM_MIN_TILES = 9      # fewer tiles (one 256-px image has 9) give noise peaks: no spectrum figures
SPECTRUM_MAX_PERIOD = 32.0  # px: longer periods (the grain structure itself) are not searched for peaks
SPECTRUM_BACKGROUND = 7     # spectrum bins: side of the median window giving a bin's background

# Verdict thresholds: a generated set gets WARN when any of these holds.
MAX_HISTOGRAM_W1 = 0.10           # grey-level W1 generated vs real above this
MIN_REFERENCE_CONTRAST = 0.03     # real contrast below this: boundaries are no dark lines, profile not compared
CONTRAST_RATIO_RANGE = (0.5, 2.0)  # generated / real boundary contrast outside this
WIDTH_RATIO_RANGE = (0.5, 2.0)    # generated / real line width (FWHM) outside this
MIN_PEAK = 5.0                    # spectral bins > 5x their background are peaks (periodic pattern) ...
MAX_PERIODIC_FRACTION = 0.01      # ... an artefact when they carry > 1 % of the grey-level variance
PEAK_FACTOR = 3.0                 # and the highest is > 3x the real images' highest
MIN_F1_RATIO = 0.7                # unet_f1_ratio: F1 on generated / F1 on real below this

THRESHOLDS = {"max_histogram_w1": MAX_HISTOGRAM_W1, "min_reference_contrast": MIN_REFERENCE_CONTRAST,
              "contrast_ratio_range": list(CONTRAST_RATIO_RANGE), "width_ratio_range": list(WIDTH_RATIO_RANGE),
              "min_peak": MIN_PEAK, "max_periodic_fraction": MAX_PERIODIC_FRACTION, "peak_factor": PEAK_FACTOR}

_GREY_LEVELS = np.arange(GREY_BINS) / (GREY_BINS - 1)


def grey_histogram(image: np.ndarray) -> np.ndarray:
    """Pixel counts (GREY_BINS,) of an image (any shape, values in [0, 1]) at grey levels k/255."""
    levels = np.clip(np.rint(np.asarray(image, dtype=np.float64) * (GREY_BINS - 1)), 0, GREY_BINS - 1)
    return np.bincount(levels.astype(np.int64).ravel(), minlength=GREY_BINS).astype(np.float64)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance (grey levels, 0..1) between two grey histograms (GREY_BINS,), counts or fractions."""
    return float(wasserstein_distance(_GREY_LEVELS, _GREY_LEVELS, a, b))


def profile_features(profile: np.ndarray) -> tuple[float, float | None]:
    """(contrast in grey levels, line width in px or None) of a profile (PROFILE_MAX_DISTANCE + 1,).

    contrast = mean of profile[PLATEAU_FROM:] minus profile[0]; width = 2 d_half, d_half the distance
    (linearly interpolated) where the profile first climbs half-way from profile[0] to the plateau;
    None when the boundaries are not darker than the grains or the dip never climbs half-way.
    """
    profile = np.asarray(profile, dtype=np.float64)
    contrast = float(np.nanmean(profile[PLATEAU_FROM:]) - profile[0])
    if not contrast > 0:
        return contrast, None
    rise = profile - profile[0]
    for d in range(1, len(profile)):
        if rise[d] >= contrast / 2:
            below = rise[d - 1]
            return contrast, float(2 * (d - 1 + (contrast / 2 - below) / (rise[d] - below)))
    return contrast, None


def _ring_whitened(power: np.ndarray) -> np.ndarray:
    """A power spectrum (T, T) divided by the median of its ring (bins at the same rounded radius): flat
    where the spectrum depends on the radius only, as an isotropic grain texture's does."""
    size = power.shape[0]
    freq = np.fft.fftfreq(size) * size
    ring = np.rint(np.hypot(freq[:, None], freq[None, :])).astype(np.int64)
    medians = np.array([np.median(power[ring == k]) for k in range(ring.max() + 1)])
    return power / np.maximum(medians[ring], 1e-30)


def spectral_peak(power: np.ndarray) -> tuple[float, float, float]:
    """(height, period in px, power fraction) of the strongest periodic component of a power spectrum (T, T),
    unshifted as ``np.fft.fft2`` gives it.

    Height: the largest ratio, among bins of period <= SPECTRUM_MAX_PERIOD, of a bin of the ring-whitened
    spectrum to the median of the SPECTRUM_BACKGROUND^2 bins around it. Period: a periodic pattern puts
    peaks on the lattice of its fundamental frequency (often only at the high harmonics, where the grain
    texture is weak), so the period is 1 / the shortest frequency step between the local maxima of height
    >= MIN_PEAK (DC included); with none so high, 1 / the strongest bin's frequency. Fraction: the power
    above background in those peaks (with their 3 x 3 window lobes) over the power of all bins but DC,
    i.e. the share of the grey-level variance that the periodic pattern carries.
    """
    size = power.shape[0]
    freq = np.fft.fftfreq(size)
    radius = np.hypot(freq[:, None], freq[None, :])
    white = _ring_whitened(power)
    background = ndimage.median_filter(white, size=SPECTRUM_BACKGROUND, mode="wrap")
    ratio = np.where(radius >= 1.0 / SPECTRUM_MAX_PERIOD, white / np.maximum(background, 1e-30), 0.0)
    strongest = np.unravel_index(np.argmax(ratio), ratio.shape)
    strong = ratio >= MIN_PEAK
    peaks = np.argwhere(strong & (ratio == ndimage.maximum_filter(ratio, size=5, mode="wrap")))
    if len(peaks) == 0:
        return float(ratio[strongest]), float(1.0 / radius[strongest]), 0.0
    points = np.concatenate([np.zeros((1, 2), dtype=np.int64), peaks])
    steps = (points[:, None, :] - points[None, :, :] + size // 2) % size - size // 2  # bins, wrapped
    lengths = np.hypot(steps[..., 0], steps[..., 1])
    lobes = ndimage.binary_dilation(strong, np.ones((3, 3), dtype=bool)) & (radius > 0)
    excess = np.clip(power - background * power / np.maximum(white, 1e-30), 0.0, None)[lobes].sum()
    total = power[radius > 0].sum()
    return float(ratio[strongest]), float(size / lengths[lengths > 0].min()), float(excess / max(total, 1e-30))


@dataclass
class StyleStatistics:
    """Statistics of a set of (image, boundary) pairs (module docstring); JSON round trip by to_dict / from_dict."""

    histogram: np.ndarray     # (GREY_BINS,) fraction of pixels at grey level k/255
    profile: np.ndarray       # (PROFILE_MAX_DISTANCE + 1,) mean grey level at d px from the centre line; NaN: no pixel
    peak: float | None        # strongest spectral peak / its local background (None: < SPECTRUM_MIN_TILES tiles)
    peak_period: float | None  # px
    periodic_fraction: float | None  # share of the grey-level variance in the spectral peaks >= MIN_PEAK
    label_width: float        # px: mean label thickness, label pixels / centre-line pixels
    n_images: int

    @property
    def contrast(self) -> float:
        return profile_features(self.profile)[0]

    @property
    def width(self) -> float | None:
        return profile_features(self.profile)[1]

    def to_dict(self) -> dict:
        return {"histogram": [round(float(v), 7) for v in self.histogram],
                "profile": [None if np.isnan(v) else round(float(v), 6) for v in self.profile],
                "peak": self.peak, "peak_period_px": self.peak_period, "periodic_fraction": self.periodic_fraction,
                "label_width_px": self.label_width,
                "contrast": self.contrast, "width_px": self.width, "n_images": self.n_images}

    @classmethod
    def from_dict(cls, data: dict) -> StyleStatistics:
        histogram = np.asarray(data["histogram"], dtype=np.float64)
        profile = np.asarray([np.nan if v is None else v for v in data["profile"]], dtype=np.float64)
        if histogram.shape != (GREY_BINS,) or profile.shape != (PROFILE_MAX_DISTANCE + 1,):
            raise ValueError("histogram or profile of the wrong length")
        return cls(histogram, profile, data["peak"], data["peak_period_px"], data["periodic_fraction"],
                   float(data["label_width_px"]), int(data["n_images"]))


class StatisticsAccumulator:
    """Adds up the statistics of (image, boundary) pairs one at a time; ``result()`` gives StyleStatistics."""

    def __init__(self):
        self.histogram = np.zeros(GREY_BINS)
        self.profile_sum = np.zeros(PROFILE_MAX_DISTANCE + 1)
        self.profile_count = np.zeros(PROFILE_MAX_DISTANCE + 1)
        self.power = np.zeros((SPECTRUM_TILE, SPECTRUM_TILE))
        self.n_tiles = 0
        self.label_pixels = 0
        self.centre_pixels = 0
        self.n_images = 0
        self._window = np.outer(hann(SPECTRUM_TILE, sym=False), hann(SPECTRUM_TILE, sym=False))

    def add(self, image: np.ndarray, boundary: np.ndarray) -> None:
        """One pair: image float (H, W) in [0, 1], boundary bool (H, W), True = boundary."""
        image = np.asarray(image, dtype=np.float64)
        boundary = np.asarray(boundary, dtype=bool)
        if image.shape != boundary.shape:
            raise ValueError(f"image {image.shape} and boundary {boundary.shape} differ in shape")
        self.n_images += 1
        self.histogram += grey_histogram(image)
        centre = skeletonize(boundary)
        self.label_pixels += int(np.count_nonzero(boundary))
        self.centre_pixels += int(np.count_nonzero(centre))
        if centre.any():
            distance = np.rint(ndimage.distance_transform_edt(~centre)).astype(np.int64)
            near = distance <= PROFILE_MAX_DISTANCE
            self.profile_sum += np.bincount(distance[near], weights=image[near], minlength=PROFILE_MAX_DISTANCE + 1)
            self.profile_count += np.bincount(distance[near], minlength=PROFILE_MAX_DISTANCE + 1)
        if min(image.shape) >= SPECTRUM_TILE:
            step = SPECTRUM_TILE // 2
            tiles = np.lib.stride_tricks.sliding_window_view(image, (SPECTRUM_TILE, SPECTRUM_TILE))[::step, ::step]
            tiles = tiles.reshape(-1, SPECTRUM_TILE, SPECTRUM_TILE)
            tiles = (tiles - tiles.mean(axis=(1, 2), keepdims=True)) * self._window
            self.power += (np.abs(np.fft.fft2(tiles)) ** 2).sum(axis=0)
            self.n_tiles += len(tiles)

    def result(self) -> StyleStatistics:
        with np.errstate(invalid="ignore", divide="ignore"):
            profile = self.profile_sum / self.profile_count
        peak, period, fraction = (spectral_peak(self.power) if self.n_tiles >= SPECTRUM_MIN_TILES
                                  else (None, None, None))
        return StyleStatistics(histogram=self.histogram / max(self.histogram.sum(), 1.0), profile=profile,
                               peak=peak, peak_period=period, periodic_fraction=fraction,
                               label_width=self.label_pixels / max(self.centre_pixels, 1), n_images=self.n_images)


def style_statistics(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> StyleStatistics:
    """Statistics of (image float (H, W) in [0, 1], boundary bool (H, W)) pairs."""
    accumulator = StatisticsAccumulator()
    for image, boundary in pairs:
        accumulator.add(image, boundary)
    return accumulator.result()


def compare(generated: StyleStatistics, reference: StyleStatistics) -> dict:
    """Generated vs real statistics: {"verdict": "OK" | "WARN", "problems": [...], "figures": {...}}."""
    figures = {"histogram_w1": histogram_distance(generated.histogram, reference.histogram),
               "contrast": generated.contrast, "contrast_real": reference.contrast,
               "width_px": generated.width, "width_px_real": reference.width,
               "peak": generated.peak, "peak_real": reference.peak,
               "peak_period_px": generated.peak_period, "peak_period_px_real": reference.peak_period,
               "periodic_fraction": generated.periodic_fraction, "periodic_fraction_real": reference.periodic_fraction,
               "label_width_px": generated.label_width, "label_width_px_real": reference.label_width}
    problems = []
    if figures["histogram_w1"] > MAX_HISTOGRAM_W1:
        problems.append(f"grey-level W1 {figures['histogram_w1']:.3f} vs real (max {MAX_HISTOGRAM_W1})")
    if reference.contrast >= MIN_REFERENCE_CONTRAST:
        low, high = CONTRAST_RATIO_RANGE
        if not low <= generated.contrast / reference.contrast <= high:
            problems.append(f"boundary contrast {generated.contrast:.2f} vs real {reference.contrast:.2f}")
        if reference.width is not None:
            low, high = WIDTH_RATIO_RANGE
            if generated.width is None or not low <= generated.width / reference.width <= high:
                shown = "none" if generated.width is None else f"{generated.width:.1f}"
                problems.append(f"boundary width {shown} px vs real {reference.width:.1f} px")
    if (generated.peak is not None and generated.periodic_fraction > MAX_PERIODIC_FRACTION
            and generated.peak > PEAK_FACTOR * (reference.peak or 0.0)):
        real = "n/a" if reference.peak is None else f"{reference.peak:.0f}x"
        problems.append(f"periodic artifact at {generated.peak_period:.1f} px (peak {generated.peak:.0f}x "
                        f"background, real {real}; {100 * generated.periodic_fraction:.1f} % of the variance)")
    return {"verdict": "WARN" if problems else "OK", "problems": problems, "figures": figures}


def _summary(figures: dict) -> str:
    """The figures of an OK verdict, for its one line."""
    width = "none" if figures["width_px"] is None else f"{figures['width_px']:.1f}"
    width_real = "none" if figures["width_px_real"] is None else f"{figures['width_px_real']:.1f}"
    peak_real = "n/a" if figures["peak_real"] is None else f"{figures['peak_real']:.1f}x"
    peak = "n/a" if figures["peak"] is None else (f"{figures['peak']:.1f}x at {figures['peak_period_px']:.1f} px, "
                                                  f"{100 * figures['periodic_fraction']:.2f} % of the variance")
    return (f"grey W1 {figures['histogram_w1']:.3f}; boundary contrast {figures['contrast']:.2f} vs real "
            f"{figures['contrast_real']:.2f}, width {width} vs {width_real} px; strongest spectral peak {peak} "
            f"(real {peak_real})")


def gate(out: str | os.PathLike, generated: StyleStatistics, reference: StyleStatistics | None) -> dict:
    """Compare generated with reference statistics, write ``out/fidelity.json``, print the verdict line on
    stderr; returns the ``fidelity`` block for run.json (verdict, line, problems, figures). Never raises
    on a bad verdict."""
    if reference is None:
        report = {"verdict": "UNCHECKED", "problems": [], "figures": {}}
        line = (f"fidelity: UNCHECKED (the style model has no {REFERENCE_FILE}; "
                "retrain it with this version to compare with the real images)")
    else:
        report = compare(generated, reference)
        line = f"fidelity: {report['verdict']} " + ("; ".join(report["problems"]) if report["problems"]
                                                     else _summary(report["figures"]))
    report["line"] = line
    write_json(Path(out) / REPORT_FILE, {**report, "thresholds": THRESHOLDS, "generated": generated.to_dict(),
                                         "reference": None if reference is None else reference.to_dict()})
    print(line, file=sys.stderr)
    return {**report, "file": str(Path(out) / REPORT_FILE)}


def write_reference(model_dir: str | os.PathLike, reference: StyleStatistics) -> None:
    """Store the real images' statistics as ``model_dir/reference_stats.json`` (a few kB)."""
    write_json(Path(model_dir) / REFERENCE_FILE, reference.to_dict())


def read_reference(model_dir: str | os.PathLike) -> StyleStatistics | None:
    """The reference stored by ``train_style`` in ``model_dir`` (the folder or its generator.pt); None when
    the model has none (trained by an older version); UserError naming the file if it is unreadable."""
    folder = Path(model_dir)
    path = (folder.parent if folder.is_file() else folder) / REFERENCE_FILE
    if not path.is_file():
        return None
    try:
        return StyleStatistics.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: unreadable reference statistics ({err}); delete it or retrain the model") from err


def check_training(generator, config, real_pairs: list, sample_boundaries: list[np.ndarray], out: Path,
                   device, seed: int) -> dict:
    """The end of ``train_style``: the reference from ``real_pairs`` (Pair list) written into the model folder
    ``out``, compared with images painted on ``sample_boundaries`` (bool (H, W) each, painted as the sample
    grid paints them: seed + index); returns the run.json block of ``gate``."""
    from grainforge.style.apply import paint

    reference = style_statistics((pair.image, pair.boundary) for pair in real_pairs)
    write_reference(out, reference)
    generated = style_statistics(
        (paint(generator, boundary, config, device=device, dropout=config.inference_dropout, seed=seed + index),
         boundary) for index, boundary in enumerate(sample_boundaries))
    return gate(out, generated, reference)


def unet_f1_ratio(train_pairs: list, held_out: list, generated: dict[str, np.ndarray], work: str | os.PathLike,
                  seed: int = 0, iters: int | None = None, tolerances: tuple[float, ...] = (2, 0)) -> dict:
    """The slower check (trains a cpu-small U-Net: minutes): can a U-Net trained on the real ``train_pairs``
    segment generated images as well as real ones?

    ``held_out``: Pair list neither network saw; ``generated``: {pair name: float (H, W) image painted on
    that pair's boundary}. The U-Net is trained once per ``work`` folder (reused if ``work/segmenter`` is
    finished) and segments the real and the generated held-out images. Returns, per tolerance t (px):
    {t: {"real": mean F1, "generated": mean F1, "ratio": generated / real, "real_per_image": [...],
    "generated_per_image": [...]}}; the target is ratio >= MIN_F1_RATIO at 2 px.
    """
    from grainforge.data.io import read_image, to_uint8, write_png
    from grainforge.metrics import boundary_prf
    from grainforge.segment import SEGMENT_PRESETS, predict, train_segmenter

    work = Path(work)
    model_dir = work / "segmenter"
    if not (model_dir / "run.json").is_file():
        train_segmenter(None, model_dir, SEGMENT_PRESETS["cpu-small"], iters=iters, seed=seed, device="auto",
                        real_pairs=train_pairs)
    predicted: dict[str, dict[str, np.ndarray]] = {}
    for kind in ("real", "generated"):
        inputs = work / f"{kind}_inputs"
        for pair in held_out:
            write_png(inputs / f"{pair.name}.png", to_uint8(pair.image if kind == "real" else generated[pair.name]))
        predict(model_dir, [inputs], work / f"{kind}_predicted", device="auto")
        predicted[kind] = {pair.name: read_image(work / f"{kind}_predicted" / "boundaries" / f"{pair.name}.png") > 127
                           for pair in held_out}
    scores = {}
    for tolerance in tolerances:
        per_image = {kind: [boundary_prf(pair.boundary, predicted[kind][pair.name], tolerance)[2] for pair in held_out]
                     for kind in ("real", "generated")}
        real, gen = float(np.mean(per_image["real"])), float(np.mean(per_image["generated"]))
        scores[tolerance] = {"real": real, "generated": gen, "ratio": gen / real if real > 0 else float("nan"),
                             "real_per_image": per_image["real"], "generated_per_image": per_image["generated"]}
    return scores
