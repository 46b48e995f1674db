"""Measuring and drawing boundary line widths (hand-traced labels vs 1-px simulated sections)."""

from __future__ import annotations

import numpy as np
import pytest

from grainforge.grains import boundary_from_ids, label_grains
from grainforge.labelwidth import ONE_PIXEL_WIDTH_PX, draw_at_width, line_width, mean_line_width
from grainforge.microscope import voronoi_grains


@pytest.mark.parametrize("rows", [1, 3, 5])
def test_width_of_a_straight_band_is_its_thickness(rows):
    boundary = np.zeros((64, 600), bool)
    boundary[30:30 + rows, 50:550] = True
    assert line_width(boundary) == pytest.approx(rows, rel=0.02)


def test_closed_one_pixel_boundaries_measure_the_documented_width():
    boundary = boundary_from_ids(voronoi_grains(384, 700, seed=4))
    assert line_width(boundary) == pytest.approx(ONE_PIXEL_WIDTH_PX, abs=0.06)
    assert np.isnan(line_width(np.zeros((8, 8), bool)))
    both = mean_line_width([boundary, np.zeros((8, 8), bool)])
    assert both == pytest.approx(line_width(boundary))


@pytest.mark.parametrize("width", [3.0, 4.0, 5.0])
def test_drawn_width_is_near_the_target_and_no_grains_merge(width):
    ids = voronoi_grains(384, 700, seed=5)
    thin = boundary_from_ids(ids)
    thick = draw_at_width(thin, width)
    assert line_width(thick) == pytest.approx(width, abs=0.6)
    assert (thick >= thin).all()  # only dilation
    # every grain of the thick map lies inside one grain of the 1-px map: nothing leaked through
    thin_labels, thick_labels = label_grains(thin), label_grains(thick)
    inside = thick_labels > 0
    pairs = np.unique(np.stack([thick_labels[inside], thin_labels[inside]]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1]
    # redrawing a thick map at its own width keeps it about as wide
    assert line_width(draw_at_width(thick, width)) == pytest.approx(width, abs=0.6)


def test_width_below_one_pixel_is_refused():
    with pytest.raises(ValueError, match="must be >= 1"):
        draw_at_width(np.ones((4, 4), bool), 0.5)
