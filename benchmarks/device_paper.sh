#!/usr/bin/env bash
# The prepared device run of issue 9: the `paper` config on one GPU, sized for < 8 minutes on one H200.
#
#   bash benchmarks/device_paper.sh                     # on the GPU machine (DEVICE=cuda, the default)
#   DEVICE=cpu GRAINFORGE_DEVICE_TINY=1 bash benchmarks/device_paper.sh   # a CPU check of every step, tiny sizes
#
# 1. pix2pix, `paper` preset: training iterations/s (batch 1 x 256 px) and generated 400 x 400 images/s in the
#    reference's inference mode (benchmarks/style_speed.py; it measures cpu-small too);
# 2. U-Net, `paper` preset: training iterations/s (batch 8 x 400 px) and the tiled prediction of one
#    2800 x 1600 micrograph (benchmarks/segment_speed.py);
# 3. a short paper-config slice end to end (`grainforge experiment`): the paper presets (fixed patch set,
#    grain-ID Table 3, raw and closed scores) with two real fractions (25 %, 100 %), one seed and reduced
#    iterations (pix2pix 300, U-Net 200) on a small built-in demo set: report.md and results.csv.
#
# Python: $PYTHON (default python3; the GPU image's python3 holds torch, numba, scikit-image, typer, rich,
# tifffile, h5py). Only skops is missing there: the forest rows need it. On the machine that calls the device
# tool, once: `echo /.whl/ >> .git/info/exclude; python3 -m pip download --no-deps --only-binary=:all:
# --python-version 3.12 --implementation cp -d .whl skops==0.13.0 prettytable wcwidth` and carry `.whl`;
# this script installs what it finds there. Every figure goes to $RESULTS (default
# $OUT/device_paper_results.md when the device tool's $OUT is set, else benchmarks/device_paper_results.md)
# and (not in the tiny check) is appended to benchmarks/RESULTS.md of the tree it runs in (on the device
# machine that copy does not come back: append the returned file by hand). The slice's report.md and results.csv land beside $RESULTS.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
TINY=${GRAINFORGE_DEVICE_TINY:-0}
OUTDIR=${OUT:-benchmarks}
RESULTS=${RESULTS:-$OUTDIR/device_paper_results.md}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$PYTHON" -c "import skops" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi

if [ "$TINY" = 1 ]; then   # every step on tiny sizes: a check that the script runs, not a measurement
    STYLE_SECONDS=1; SEGMENT_ARGS=(--config cpu-small --iters 1); SLICE_IMAGES=8; SLICE_SIZE=256; SLICE_PATCH=128
    SLICE_PATCHES=24; SIM_SIZE=32; SIM_ZOOM=8; SLICE_STYLE_ITERS=2; SLICE_SEGMENT_ITERS=2
    STYLE_OVERRIDES="{crop: 64, ngf: 8, ndf: 8}"; SEGMENT_OVERRIDES="{width: 8, crop: 128, tile: 128}"
else
    STYLE_SECONDS=15; SEGMENT_ARGS=(--config paper --iters 20); SLICE_IMAGES=20; SLICE_SIZE=800; SLICE_PATCH=400
    SLICE_PATCHES=224; SIM_SIZE=100; SIM_ZOOM=8; SLICE_STYLE_ITERS=300; SLICE_SEGMENT_ITERS=200
    STYLE_OVERRIDES="{}"; SEGMENT_OVERRIDES="{}"
fi

{
    echo
    echo "## Device run of the paper config — \`benchmarks/device_paper.sh\` ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Command: \`DEVICE=$DEVICE GRAINFORGE_DEVICE_TINY=$TINY bash benchmarks/device_paper.sh\`;" \
         "git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
    "$PYTHON" - <<'EOF'
import torch
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"Machine: {name}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads.")
EOF
    echo
    echo '```'
} >> "$RESULTS"

step() {  # step TITLE COMMAND...: run it, its output (and seconds) into $RESULTS
    local t0=$SECONDS
    echo "== $1" | tee -a "$RESULTS"
    shift
    "$@" 2>&1 | tee -a "$RESULTS"
    echo "   ($((SECONDS - t0)) s)" | tee -a "$RESULTS"
}

step "pix2pix speed (paper and cpu-small presets)" \
    "$PYTHON" benchmarks/style_speed.py --device "$DEVICE" --seconds "$STYLE_SECONDS"
step "U-Net speed (${SEGMENT_ARGS[*]})" "$PYTHON" benchmarks/segment_speed.py --device "$DEVICE" "${SEGMENT_ARGS[@]}"

cat > "$WORK/slice.yaml" <<EOF
base: paper
real: {demo_images: $SLICE_IMAGES, demo_size: $SLICE_SIZE, test_fraction: 0.25, test_tile: $SLICE_PATCH,
       patches: $SLICE_PATCHES, patch: $SLICE_PATCH}
simulation: {size: $SIM_SIZE, mcs: 100, stride: 4, axes: xyz, match_mean_area: false, zoom: $SIM_ZOOM,
             crop: $SLICE_PATCH}
style: {preset: paper, iters: $SLICE_STYLE_ITERS, overrides: $STYLE_OVERRIDES}
segment: {preset: paper, iters: $SLICE_SEGMENT_ITERS, overrides: $SEGMENT_OVERRIDES}
fractions: [0.25, 1.0]
seeds: [0]
tables: [table1, table3, table4]
device: $DEVICE
EOF
step "paper-config slice: dry run" "$PYTHON" -m grainforge experiment "$WORK/slice.yaml" --dry-run
step "paper-config slice: run (2 fractions, 1 seed, reduced iterations)" \
    "$PYTHON" -m grainforge experiment "$WORK/slice.yaml" --out "$WORK/run"
echo '```' >> "$RESULTS"
cp "$WORK/run/report.md" "$OUTDIR/device_paper_report.md"
cp "$WORK/run/results.csv" "$OUTDIR/device_paper_results.csv"
if [ "$TINY" != 1 ] && [ "$RESULTS" != benchmarks/RESULTS.md ]; then  # a tiny check is no measurement
    cat "$RESULTS" >> benchmarks/RESULTS.md
fi
echo "figures: $RESULTS; slice report: $OUTDIR/device_paper_report.md"
