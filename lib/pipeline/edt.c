/* edt.c: exact Euclidean distance transform (Felzenszwalb & Huttenlocher,
 * "Distance Transforms of Sampled Functions", 2012).
 *
 * Why this one: it is exact (not a chamfer approximation, whose octagonal
 * iso-lines would show as facets on an inflated shape) and O(N): one 1-D
 * lower-envelope-of-parabolas pass per column, then one per row, on squared
 * distances.
 */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

#define EDT_INF 1e20f

/* 1-D squared distance transform of f (n samples) into d; v and z are
 * scratch of n and n+1 entries. */
static void edt_1d(const float *f, float *d, uint32_t n, uint32_t *v,
                   float *z) {
  uint32_t k = 0;
  v[0] = 0;
  z[0] = -EDT_INF;
  z[1] = EDT_INF;
  for (uint32_t q = 1; q < n; q++) {
    /* Where the parabola from q overtakes the rightmost one kept; pop the
     * ones it hides. z[0] = -inf ends the loop, since s is finite. */
    uint32_t p = v[k];
    float s = ((f[q] + (float)q * q) - (f[p] + (float)p * p)) /
              (2.0f * (float)q - 2.0f * (float)p);
    while (s <= z[k]) {
      k--;
      p = v[k];
      s = ((f[q] + (float)q * q) - (f[p] + (float)p * p)) /
          (2.0f * (float)q - 2.0f * (float)p);
    }
    k++;
    v[k] = q;
    z[k] = s;
    z[k + 1] = EDT_INF;
  }
  k = 0;
  for (uint32_t q = 0; q < n; q++) {
    while (z[k + 1] < (float)q)
      k++;
    float dq = (float)q - (float)v[k];
    d[q] = dq * dq + f[v[k]];
  }
}

orfeas_pl_code pl_edt(const uint8_t *seed, uint32_t w, uint32_t h, float *out) {
  uint32_t n = w > h ? w : h;
  /* Scratch owned here: one line in, one line out, and the envelope. */
  float *f = calloc(n + 1, sizeof *f);
  float *d = malloc(n * sizeof *d);
  float *z = malloc((n + 1) * sizeof *z);
  uint32_t *v = malloc(n * sizeof *v);
  if (!f || !d || !z || !v) {
    free(f);
    free(d);
    free(z);
    free(v);
    return ORFEAS_PL_ENOMEM;
  }
  for (size_t i = 0; i < (size_t)w * h; i++)
    out[i] = seed[i] ? 0.0f : EDT_INF;
  for (uint32_t x = 0; x < w; x++) {
    for (uint32_t y = 0; y < h; y++)
      f[y] = out[(size_t)y * w + x];
    edt_1d(f, d, h, v, z);
    for (uint32_t y = 0; y < h; y++)
      out[(size_t)y * w + x] = d[y];
  }
  for (uint32_t y = 0; y < h; y++) {
    float *row = out + (size_t)y * w;
    for (uint32_t x = 0; x < w; x++)
      f[x] = row[x];
    edt_1d(f, d, w, v, z);
    for (uint32_t x = 0; x < w; x++)
      row[x] = d[x] >= EDT_INF ? EDT_INF : sqrtf(d[x]);
  }
  free(f);
  free(d);
  free(z);
  free(v);
  return ORFEAS_PL_OK;
}
