/* mask.c: image_preprocessing. From RGBA pixels to the quality grid.
 *
 * 1. Foreground per pixel: alpha >= 128 when the image has a real alpha
 *    channel (one that is not constant); otherwise Otsu's threshold on
 *    luminance, with the polarity that makes most of the image border
 *    background (a dark object on white and a white object on black both
 *    come out as the object).
 * 2. Downsample to the grid: a cell is foreground when at least half of its
 *    pixels are; it also keeps its mean colour and luminance. The pass walks
 *    one band of cell rows at a time, so its scratch memory is O(grid width).
 * 3. Well-composed fix: a 2x2 block whose foreground touches only at a
 *    corner would make a pinch vertex in the mesh; one empty cell of it is
 *    filled, until no such block is left.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static inline uint32_t luma(const uint8_t *p) {
  /* BT.601 weights in 8.8 fixed point (77 + 150 + 29 = 256). */
  return (77u * p[0] + 150u * p[1] + 29u * p[2]) >> 8;
}

int pl_otsu(const uint64_t hist[256]) {
  uint64_t total = 0;
  double sum = 0;
  for (int i = 0; i < 256; i++) {
    total += hist[i];
    sum += (double)i * (double)hist[i];
  }
  double sum_b = 0, best = -1;
  uint64_t w_b = 0;
  int t = 127;
  for (int i = 0; i < 256; i++) {
    w_b += hist[i];
    if (w_b == 0)
      continue;
    uint64_t w_f = total - w_b;
    if (w_f == 0)
      break;
    sum_b += (double)i * (double)hist[i];
    double m_b = sum_b / (double)w_b, m_f = (sum - sum_b) / (double)w_f;
    double between = (double)w_b * (double)w_f * (m_b - m_f) * (m_b - m_f);
    if (between > best) {
      best = between;
      t = i;
    }
  }
  return t;
}

uint32_t pl_well_composed(uint8_t *fg, uint32_t gw, uint32_t gh) {
  uint32_t filled = 0;
  int changed = 1;
  /* Filling a cell can only create a new diagonal pattern in a block next to
   * it, and cells only ever turn on, so the loop ends (in practice 1-2
   * passes). */
  while (changed) {
    changed = 0;
    for (uint32_t y = 0; y + 1 < gh; y++) {
      uint8_t *r0 = fg + (size_t)y * gw, *r1 = r0 + gw;
      for (uint32_t x = 0; x + 1 < gw; x++) {
        int a = r0[x], b = r0[x + 1], c = r1[x], d = r1[x + 1];
        if (a && d && !b && !c) {
          r0[x + 1] = 1;
          filled++;
          changed = 1;
        } else if (b && c && !a && !d) {
          r0[x] = 1;
          filled++;
          changed = 1;
        }
      }
    }
  }
  return filled;
}

int pl_is_well_composed(const uint8_t *fg, uint32_t gw, uint32_t gh) {
  for (uint32_t y = 0; y + 1 < gh; y++) {
    const uint8_t *r0 = fg + (size_t)y * gw, *r1 = r0 + gw;
    for (uint32_t x = 0; x + 1 < gw; x++) {
      int a = r0[x], b = r0[x + 1], c = r1[x], d = r1[x + 1];
      if ((a && d && !b && !c) || (b && c && !a && !d))
        return 0;
    }
  }
  return 1;
}

orfeas_pl_code pl_count_components(const uint8_t *fg, uint32_t gw, uint32_t gh,
                                   uint32_t *out) {
  size_t n = (size_t)gw * gh;
  /* Scratch owned here: a visited map and the flood-fill stack. */
  uint8_t *seen = calloc(n ? n : 1, 1);
  uint32_t *stack = malloc((n ? n : 1) * sizeof *stack);
  if (seen == NULL || stack == NULL) {
    free(seen);
    free(stack);
    return ORFEAS_PL_ENOMEM;
  }
  uint32_t count = 0;
  for (size_t i = 0; i < n; i++) {
    if (!fg[i] || seen[i])
      continue;
    count++;
    size_t top = 0;
    stack[top++] = (uint32_t)i;
    seen[i] = 1;
    while (top) {
      uint32_t c = stack[--top];
      uint32_t x = c % gw, y = c / gw;
      uint32_t nb[4];
      int k = 0;
      if (x > 0)
        nb[k++] = c - 1;
      if (x + 1 < gw)
        nb[k++] = c + 1;
      if (y > 0)
        nb[k++] = c - gw;
      if (y + 1 < gh)
        nb[k++] = c + gw;
      for (int j = 0; j < k; j++)
        if (fg[nb[j]] && !seen[nb[j]]) {
          seen[nb[j]] = 1;
          stack[top++] = nb[j];
        }
    }
  }
  free(seen);
  free(stack);
  *out = count;
  return ORFEAS_PL_OK;
}

/* 1 when the image's alpha is not constant. Stops at the first alpha
 * that differs from the first pixel's: for a cut-out object that is within
 * the first rows, so an image with real alpha costs a fraction of a pass.
 * Two pixels a 64-bit word, their alpha bytes masked (mask and pattern
 * built from bytes, so any byte order), 32 words OR-ed per branch: an
 * opaque RGBA image's whole scan costs ~0.2 ms at 1024 px (docs/pipeline.md).
 */
static int alpha_varies(const orfeas_pl_image *img) {
  size_t n = (size_t)img->width * img->height;
  const uint8_t *p = img->rgba;
  if (n == 0)
    return 0;
  uint8_t a0 = p[3];
  static const uint8_t mask_b[8] = {0, 0, 0, 0xFF, 0, 0, 0, 0xFF};
  const uint8_t pat_b[8] = {0, 0, 0, a0, 0, 0, 0, a0};
  uint64_t mask, pat;
  memcpy(&mask, mask_b, sizeof mask);
  memcpy(&pat, pat_b, sizeof pat);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    uint64_t diff = 0;
    for (size_t k = 0; k < 64; k += 2) {
      uint64_t v;
      memcpy(&v, p + (i + k) * 4, sizeof v);
      diff |= (v ^ pat) & mask;
    }
    if (diff)
      return 1;
  }
  for (; i < n; i++)
    if (p[i * 4 + 3] != a0)
      return 1;
  return 0;
}

/* Pass 1: decides the mask source and, for Otsu, threshold and polarity.
 * A real alpha channel decides by itself; the luminance histograms (the
 * pass over every pixel) are made only for Otsu. */
static void classify(const orfeas_pl_image *img, pl_grid *g) {
  if (img->has_alpha && alpha_varies(img)) {
    g->source = PL_MASK_ALPHA;
    return;
  }
  uint64_t hist[256] = {0}, border[256] = {0};
  uint32_t w = img->width, h = img->height;
  for (uint32_t y = 0; y < h; y++) {
    const uint8_t *p = img->rgba + (size_t)y * w * 4;
    int edge_row = y == 0 || y + 1 == h;
    for (uint32_t x = 0; x < w; x++, p += 4) {
      uint32_t l = luma(p);
      hist[l]++;
      if (edge_row || x == 0 || x + 1 == w)
        border[l]++;
    }
  }
  g->source = PL_MASK_OTSU;
  int t = pl_otsu(hist);
  uint64_t bright = 0, all = 0;
  for (int i = 0; i < 256; i++) {
    all += border[i];
    if (i > t)
      bright += border[i];
  }
  g->otsu_threshold = t;
  /* Most of the border bright -> the background is bright -> the object is
   * the dark side. */
  g->otsu_fg_dark = bright * 2 >= all;
}

void pl_grid_free(pl_grid *g) {
  if (g == NULL)
    return;
  free(g->fg);
  free(g->rgb);
  free(g->lum);
  memset(g, 0, sizeof *g);
}

/* Over 80 lines on purpose: one pass over the image in bands of cell rows
 * (the band's scratch, its accumulation, its cells), then the
 * well-composed fix, the foreground count and the components; split, the
 * band loop's state would have to be handed around. */
orfeas_pl_code pl_grid_build(const orfeas_pl_image *img, uint32_t grid_long,
                             pl_grid *g) {
  memset(g, 0, sizeof *g);
  uint32_t w = img->width, h = img->height;
  uint32_t lng = w > h ? w : h;
  uint32_t cells = grid_long < lng ? grid_long : lng;
  if (cells < 1)
    cells = 1;
  /* Keep the image's aspect ratio; every cell covers at least one pixel. */
  uint32_t gw = (uint32_t)(((uint64_t)w * cells + lng / 2) / lng);
  uint32_t gh = (uint32_t)(((uint64_t)h * cells + lng / 2) / lng);
  gw = gw < 1 ? 1 : gw > w ? w : gw;
  gh = gh < 1 ? 1 : gh > h ? h : gh;
  g->gw = gw;
  g->gh = gh;
  size_t n = (size_t)gw * gh;
  g->fg = malloc(n);
  g->rgb = malloc(n * 3);
  g->lum = malloc(n);
  /* Scratch for one band of cell rows: counts and sums per cell column. */
  uint32_t *acc = calloc((size_t)gw * 9, sizeof *acc);
  uint32_t *xcell = malloc((size_t)w * sizeof *xcell);
  if (!g->fg || !g->rgb || !g->lum || !acc || !xcell) {
    free(acc);
    free(xcell);
    pl_grid_free(g);
    return ORFEAS_PL_ENOMEM;
  }
  classify(img, g);
  for (uint32_t x = 0; x < w; x++)
    xcell[x] = (uint32_t)((uint64_t)x * gw / w);
  int alpha = g->source == PL_MASK_ALPHA;
  uint32_t t = (uint32_t)g->otsu_threshold;
  int dark = g->otsu_fg_dark;
  for (uint32_t cy = 0; cy < gh; cy++) {
    uint32_t y0 = (uint32_t)((uint64_t)cy * h / gh);
    uint32_t y1 = (uint32_t)((uint64_t)(cy + 1) * h / gh);
    memset(acc, 0, (size_t)gw * 9 * sizeof *acc);
    for (uint32_t y = y0; y < y1; y++) {
      const uint8_t *p = img->rgba + (size_t)y * w * 4;
      for (uint32_t x = 0; x < w; x++, p += 4) {
        /* acc per cell: n, nfg, lum, r,g,b (all), r,g,b (fg). */
        uint32_t *a = acc + (size_t)xcell[x] * 9;
        uint32_t l = luma(p);
        int f = alpha ? p[3] >= 128 : dark ? l <= t : l > t;
        a[0]++;
        a[2] += l;
        a[3] += p[0];
        a[4] += p[1];
        a[5] += p[2];
        if (f) {
          a[1]++;
          a[6] += p[0];
          a[7] += p[1];
          a[8] += p[2];
        }
      }
    }
    for (uint32_t cx = 0; cx < gw; cx++) {
      const uint32_t *a = acc + (size_t)cx * 9;
      size_t i = (size_t)cy * gw + cx;
      uint32_t cnt = a[0] ? a[0] : 1;
      g->fg[i] = a[1] * 2 >= a[0] && a[1] > 0;
      g->lum[i] = (uint8_t)(a[2] / cnt);
      /* The colour of the object, not of the background it was cut from:
       * use the foreground pixels when the cell has any. */
      const uint32_t *s = a[1] ? a + 6 : a + 3;
      uint32_t d = a[1] ? a[1] : cnt;
      for (int k = 0; k < 3; k++)
        g->rgb[i * 3 + k] = (uint8_t)(s[k] / d);
    }
  }
  free(acc);
  free(xcell);
  g->fixes = pl_well_composed(g->fg, gw, gh);
  uint32_t fgc = 0;
  for (size_t i = 0; i < n; i++)
    fgc += g->fg[i];
  g->fg_cells = fgc;
  if (pl_count_components(g->fg, gw, gh, &g->components) != ORFEAS_PL_OK) {
    pl_grid_free(g);
    return ORFEAS_PL_ENOMEM;
  }
  return ORFEAS_PL_OK;
}
