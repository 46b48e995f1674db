/* The O(26^2) form of the Potts "distinct" trial rule in C: a C transcription of SPPARKS' rule, not SPPARKS.
 *
 * Written from the rule's description (docs/design.md §5.3, benchmarks/RESULTS.md), as
 * benchmarks/potts_throughput.py:_slow_distinct_pass does it, so it gives that function's volume bit
 * for bit: per site, the distinct other ids of the 26 neighbours in order of first appearance (each
 * neighbour checked against the list so far), one of them by (hi * n) >> 32, ΔE over the 26
 * neighbours, Metropolis with lo < thresholds[ΔE + 26]. Serial; the 8 sub-lattices in order 0..7.
 * Compiled with gcc -O3 by the benchmark (SPPARKS' own build is serial -O3) as a same-run reference.
 */
#include <stdint.h>

static uint64_t mix(uint64_t key, uint64_t counter) {
    uint64_t z = key + (counter + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int64_t wrap(int64_t i, int64_t n) { return i < 0 ? i + n : (i >= n ? i - n : i); }

/* One MCS on ids (lx, ly, lz), C order, in place; thresholds: uint64 (53,). Returns ΔE; *flips gets the flips. */
int64_t slow_distinct_sweep(uint32_t *ids, int64_t lx, int64_t ly, int64_t lz, uint64_t seed, uint64_t mcs,
                            const uint64_t *thresholds, int64_t *flips) {
    int64_t energy_change = 0;
    *flips = 0;
    for (int sub = 0; sub < 8; sub++) {
        int64_t px = (sub >> 2) & 1, py = (sub >> 1) & 1, pz = sub & 1;
        uint64_t key = mix(mix(seed, mcs), (uint64_t)sub);
        for (int64_t x = px; x < lx; x += 2) {
            for (int64_t y = py; y < ly; y += 2) {
                int64_t bases[9];
                for (int a = 0; a < 3; a++)
                    for (int b = 0; b < 3; b++)
                        bases[3 * a + b] = (wrap(x + a - 1, lx) * ly + wrap(y + b - 1, ly)) * lz;
                for (int64_t z = pz; z < lz; z += 2) {
                    int64_t site = bases[4] + z, column[3] = {wrap(z - 1, lz), z, wrap(z + 1, lz)};
                    uint32_t old = ids[site], distinct[26];
                    uint64_t r = mix(key, (uint64_t)site);
                    int n = 0;
                    for (int row = 0; row < 9; row++)
                        for (int c = 0; c < 3; c++) {
                            uint32_t v = ids[bases[row] + column[c]];
                            if (v == old) continue;
                            int seen = 0;
                            for (int k = 0; k < n && !seen; k++) seen = distinct[k] == v;
                            if (!seen) distinct[n++] = v;
                        }
                    if (n == 0) continue;
                    uint32_t new_id = distinct[((r >> 32) * (uint64_t)n) >> 32];
                    int64_t delta = -1; /* the site itself is counted once as equal to old */
                    for (int row = 0; row < 9; row++)
                        for (int c = 0; c < 3; c++) {
                            uint32_t v = ids[bases[row] + column[c]];
                            delta += (v == old) - (v == new_id);
                        }
                    if (delta <= 0 || (r & 0xFFFFFFFFULL) < thresholds[delta + 26]) {
                        ids[site] = new_id;
                        energy_change += delta;
                        *flips += 1;
                    }
                }
            }
        }
    }
    return energy_change;
}
