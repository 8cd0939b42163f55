/* quality.c: quality_validation. One O(F) pass over the mesh and a score.
 *
 * Topology without a hash table: the directed edges are bucketed by their
 * origin vertex (a counting sort, O(F + V)); then the twin of (a,b) is
 * looked up in b's short list (about 6 entries on a grid mesh), and a
 * repeated (a,b) in a's list is a duplicate. "Every directed edge has exactly
 * one twin" is then open == 0 && dup == 0: watertight, 2 faces per edge and
 * consistent winding in one test.
 *
 * Score (also in docs/pipeline.md):
 *   T = 1 when closed, else 0.4 * max(0, 1 - 100 * (open + dup) / 3F)
 *   D = 1 - degenerate / F
 *   S = min(1, q10 / 0.5), q10 = the 10th percentile of the triangle shape
 *       q = 4 sqrt(3) A / sum(l^2) (1 equilateral, 0 degenerate): a tenth
 *       of the mesh in slivers sinks it, where a mean would hide them
 *   E = 1 - min(1, simplify_error / 0.05)
 *   C = 1 if components == expected (or expected unknown), else min/max
 *   score = [F > 0 && volume > 0] * (0.40 T + 0.15 D + 0.20 S + 0.15 E
 *                                    + 0.10 C)
 * An open or mis-wound mesh scores at most 0.76, below the printable 0.80.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define Q_DEGENERATE 1e-6
#define Q_SLIVER 0.1
#define Q_GOOD 0.5
#define Q_BINS 1024 /* percentile resolution: 1/1024 of q */

const char *orfeas_pl_grade(double s) {
  static const struct {
    double min;
    const char *g;
  } table[] = {{.95, "A+"}, {.90, "A"},  {.85, "A-"}, {.80, "B+"}, {.75, "B"},
               {.70, "B-"}, {.65, "C+"}, {.60, "C"},  {.55, "D"}};
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (s >= table[i].min)
      return table[i].g;
  return "F";
}

static uint32_t uf_find(uint32_t *parent, uint32_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]]; /* path halving */
    x = parent[x];
  }
  return x;
}

/* Half-edge counts: open, dup and the number of undirected edges. */
static orfeas_pl_code edge_pass(const orfeas_pl_mesh *m, orfeas_pl_quality *q,
                                uint64_t *edges) {
  uint32_t V = m->nverts;
  size_t H = (size_t)m->ntris * 3;
  /* Scratch owned here: bucket offsets and the edge targets, by origin. */
  uint32_t *off = calloc((size_t)V + 2, sizeof *off);
  uint32_t *dst = malloc((H + 1) * sizeof *dst);
  if (off == NULL || dst == NULL) {
    free(off);
    free(dst);
    return ORFEAS_PL_ENOMEM;
  }
  for (size_t h = 0; h < H; h++)
    off[m->idx[h] + 2]++;
  for (uint32_t v = 0; v < V; v++)
    off[v + 2] += off[v + 1];
  /* off[a + 1] is the fill cursor of a's bucket; after filling it is the
   * bucket's end, i.e. off[a] .. off[a + 1] is a's list. */
  for (size_t t = 0; t < m->ntris; t++) {
    const uint32_t *i = m->idx + t * 3;
    for (int k = 0; k < 3; k++)
      dst[off[i[k] + 1]++] = i[(k + 1) % 3];
  }
  uint64_t open = 0, dup = 0, e = 0;
  for (uint32_t a = 0; a < V; a++) {
    for (uint32_t x = off[a]; x < off[a + 1]; x++) {
      uint32_t b = dst[x];
      int mult = 0, first = 1;
      for (uint32_t y = off[a]; y < off[a + 1]; y++)
        if (dst[y] == b) {
          mult++;
          if (y < x)
            first = 0;
        }
      int twin = 0;
      for (uint32_t y = off[b]; y < off[b + 1]; y++)
        if (dst[y] == a) {
          twin = 1;
          break;
        }
      dup += mult > 1;
      open += !twin;
      /* Undirected edges: count {a,b} once, from its lower end when both
       * directions exist. */
      if (first && (!twin || a < b))
        e++;
    }
  }
  free(off);
  free(dst);
  q->open_edges = open;
  q->dup_edges = dup;
  *edges = e;
  return ORFEAS_PL_OK;
}

static orfeas_pl_code component_pass(const orfeas_pl_mesh *m,
                                     orfeas_pl_quality *q) {
  uint32_t V = m->nverts;
  uint32_t *parent = malloc(((size_t)V + 1) * sizeof *parent);
  uint8_t *used = calloc((size_t)V + 1, 1);
  if (parent == NULL || used == NULL) {
    free(parent);
    free(used);
    return ORFEAS_PL_ENOMEM;
  }
  for (uint32_t v = 0; v < V; v++)
    parent[v] = v;
  for (size_t t = 0; t < m->ntris; t++) {
    const uint32_t *i = m->idx + t * 3;
    used[i[0]] = used[i[1]] = used[i[2]] = 1;
    uint32_t r0 = uf_find(parent, i[0]);
    for (int k = 1; k < 3; k++) {
      uint32_t r = uf_find(parent, i[k]);
      if (r != r0)
        parent[r] = r0;
    }
  }
  uint32_t comps = 0, nused = 0;
  for (uint32_t v = 0; v < V; v++) {
    nused += used[v];
    comps += used[v] && uf_find(parent, v) == v;
  }
  free(parent);
  free(used);
  q->components = comps;
  q->vertices = nused;
  return ORFEAS_PL_OK;
}

/* The 10th percentile of q from a histogram: O(F), no sort. */
static double percentile10(const uint32_t *hist, uint32_t n) {
  uint64_t want = (n + 9) / 10, seen = 0;
  for (int b = 0; b < Q_BINS; b++) {
    seen += hist[b];
    if (seen >= want)
      return (double)b / Q_BINS;
  }
  return 1.0;
}

static orfeas_pl_code triangle_pass(const orfeas_pl_mesh *m,
                                    orfeas_pl_quality *q, double *q10) {
  double vol = 0, area = 0, qsum = 0, qmin = 1;
  uint32_t *hist = calloc(Q_BINS, sizeof *hist);
  if (hist == NULL)
    return ORFEAS_PL_ENOMEM;
  for (size_t t = 0; t < m->ntris; t++) {
    const uint32_t *i = m->idx + t * 3;
    const float *a = m->pos + (size_t)i[0] * 3, *b = m->pos + (size_t)i[1] * 3,
                *c = m->pos + (size_t)i[2] * 3;
    double u[3], v[3], w[3], x[3];
    for (int k = 0; k < 3; k++) {
      u[k] = (double)b[k] - a[k];
      v[k] = (double)c[k] - a[k];
      w[k] = (double)c[k] - b[k];
    }
    x[0] = u[1] * v[2] - u[2] * v[1];
    x[1] = u[2] * v[0] - u[0] * v[2];
    x[2] = u[0] * v[1] - u[1] * v[0];
    double A = 0.5 * sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]);
    double l2 = u[0] * u[0] + u[1] * u[1] + u[2] * u[2] + v[0] * v[0] +
                v[1] * v[1] + v[2] * v[2] + w[0] * w[0] + w[1] * w[1] +
                w[2] * w[2];
    double shape = l2 > 0 ? 4.0 * sqrt(3.0) * A / l2 : 0;
    /* a . (b x c) / 6, summed: the divergence theorem's signed volume. */
    vol += (a[0] * ((double)b[1] * c[2] - (double)b[2] * c[1]) +
            a[1] * ((double)b[2] * c[0] - (double)b[0] * c[2]) +
            a[2] * ((double)b[0] * c[1] - (double)b[1] * c[0])) /
           6.0;
    area += A;
    qsum += shape;
    if (shape < qmin)
      qmin = shape;
    if (shape < Q_DEGENERATE)
      q->degenerate++;
    else if (shape < Q_SLIVER)
      q->slivers++;
    int bin = (int)(shape * Q_BINS);
    hist[bin < 0 ? 0 : bin >= Q_BINS ? Q_BINS - 1 : bin]++;
  }
  *q10 = percentile10(hist, m->ntris);
  q->p10_shape = *q10;
  free(hist);
  q->volume_mm3 = vol;
  q->area_mm2 = area;
  q->mean_shape = m->ntris ? qsum / m->ntris : 0;
  q->min_shape = m->ntris ? qmin : 0;
  return ORFEAS_PL_OK;
}

orfeas_pl_code orfeas_pl_quality_check(const orfeas_pl_mesh *m,
                                       uint32_t expected_components,
                                       double simplify_error,
                                       orfeas_pl_quality *q) {
  memset(q, 0, sizeof *q);
  if (m == NULL || (m->ntris && (m->idx == NULL || m->pos == NULL)))
    return ORFEAS_PL_EINVAL;
  for (size_t h = 0; h < (size_t)m->ntris * 3; h++)
    if (m->idx[h] >= m->nverts)
      return ORFEAS_PL_EINVAL;
  q->triangles = m->ntris;
  q->simplify_error = simplify_error;
  uint64_t edges = 0;
  orfeas_pl_code rc = edge_pass(m, q, &edges);
  if (rc == ORFEAS_PL_OK)
    rc = component_pass(m, q);
  if (rc != ORFEAS_PL_OK)
    return rc;
  double q10 = 0;
  if (triangle_pass(m, q, &q10) != ORFEAS_PL_OK)
    return ORFEAS_PL_ENOMEM;
  q->euler = (int64_t)q->vertices - (int64_t)edges + (int64_t)m->ntris;
  q->closed = m->ntris > 0 && q->open_edges == 0 && q->dup_edges == 0;

  double F = m->ntris ? (double)m->ntris : 1.0;
  double bad = (double)(q->open_edges + q->dup_edges) / (3.0 * F);
  q->t_topology = q->closed ? 1.0 : 0.4 * fmax(0.0, 1.0 - 100.0 * bad);
  q->d_degenerate = 1.0 - q->degenerate / F;
  q->s_shape = fmin(1.0, q10 / Q_GOOD);
  q->e_error = 1.0 - fmin(1.0, simplify_error / 0.05);
  if (expected_components == 0 || q->components == expected_components) {
    q->c_components = 1.0;
  } else {
    double lo = q->components < expected_components ? q->components
                                                    : expected_components;
    double hi = q->components > expected_components ? q->components
                                                    : expected_components;
    q->c_components = lo / hi;
  }
  int gate = m->ntris > 0 && q->volume_mm3 > 0;
  q->score = gate ? 0.40 * q->t_topology + 0.15 * q->d_degenerate +
                        0.20 * q->s_shape + 0.15 * q->e_error +
                        0.10 * q->c_components
                  : 0.0;
  if (q->score > 1)
    q->score = 1;
  snprintf(q->grade, sizeof q->grade, "%s", orfeas_pl_grade(q->score));
  q->printable = q->closed && q->volume_mm3 > 0 && q->score >= 0.80;
  return ORFEAS_PL_OK;
}
