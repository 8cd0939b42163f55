/* glb.c: GLB 2.0 (binary glTF), written by hand.
 *
 * Layout: a 12-byte header ("glTF", 2, total length), a JSON chunk padded
 * with spaces to 4 bytes, and a BIN chunk padded with zeros to 4 bytes. The
 * BIN chunk holds POSITION, NORMAL, COLOR_0 (RGBA8 normalised, so each
 * element stays 4-byte aligned) and the indices (uint16 below 65,536
 * vertices, else uint32), each in its own buffer view.
 *
 * glTF is metres with +Y up and counter-clockwise front faces; the mesh is
 * millimetres with Y the image's up and Z out of the front, so the axes stay
 * and only the scale changes (the viewer sees the front). POSITION's min/max
 * are computed from the very floats written, and printed with 17 digits so
 * they parse back to exactly those values. Normals are area-weighted vertex
 * normals, normalised in double; a vertex with no area gets +Z.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define GLB_MAGIC 0x46546C67u
#define GLB_JSON 0x4E4F534Au
#define GLB_BIN 0x004E4942u

static orfeas_pl_code vertex_normals(const orfeas_pl_mesh *m, float *out) {
  /* Zeroed by a write, not calloc: fresh pages that calloc leaves untouched
   * would be read first by the += below, map the zero page, and then be
   * copied on the first write, a second fault and a TLB shootdown on every
   * core the process runs on (a long-running service's arena grows into
   * fresh pages now and then). posix_memalign, because the compiler turns
   * malloc + memset back into calloc. */
  size_t acc_len = ((size_t)m->nverts * 3 + 1) * sizeof(double);
  void *mem = NULL;
  if (posix_memalign(&mem, 64, acc_len) != 0)
    return ORFEAS_PL_ENOMEM;
  double *acc = memset(mem, 0, acc_len);
  for (size_t t = 0; t < m->ntris; t++) {
    const uint32_t *i = m->idx + t * 3;
    const float *a = m->pos + (size_t)i[0] * 3, *b = m->pos + (size_t)i[1] * 3,
                *c = m->pos + (size_t)i[2] * 3;
    double u[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]};
    double v[3] = {c[0] - a[0], c[1] - a[1], c[2] - a[2]};
    /* The unnormalised cross product weights each face by its area. */
    double n[3] = {u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2],
                   u[0] * v[1] - u[1] * v[0]};
    for (int k = 0; k < 3; k++)
      for (int j = 0; j < 3; j++)
        acc[(size_t)i[k] * 3 + j] += n[j];
  }
  for (size_t v = 0; v < m->nverts; v++) {
    double *n = acc + v * 3;
    double len = sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
    float *o = out + v * 3;
    if (len > 1e-30) {
      o[0] = (float)(n[0] / len);
      o[1] = (float)(n[1] / len);
      o[2] = (float)(n[2] / len);
    } else {
      o[0] = o[1] = 0.0f;
      o[2] = 1.0f;
    }
  }
  free(acc);
  return ORFEAS_PL_OK;
}

static size_t pad4(size_t n) { return (n + 3) & ~(size_t)3; }

/* Sizes and offsets of the BIN chunk's parts, and POSITION's bounds. */
typedef struct {
  uint32_t nverts;
  int rgb;  /* COLOR_0 present */
  int wide; /* uint32 indices */
  size_t pos_len, nrm_len, col_len, idx_len, bin_len;
  float lo[3], hi[3];
} glb_layout;

static orfeas_pl_code glb_layout_of(const orfeas_pl_mesh *m, glb_layout *L) {
  if (m->ntris == 0 || m->nverts == 0)
    return ORFEAS_PL_EINVAL;
  L->nverts = m->nverts;
  L->rgb = m->rgb != NULL;
  L->wide = m->nverts >= 65536;
  L->pos_len = L->nrm_len = (size_t)m->nverts * 12;
  L->col_len = L->rgb ? (size_t)m->nverts * 4 : 0;
  L->idx_len = (size_t)m->ntris * 3 * (L->wide ? 4 : 2);
  L->bin_len = L->pos_len + L->nrm_len + L->col_len + pad4(L->idx_len);
  if (L->bin_len > UINT32_MAX / 2)
    return ORFEAS_PL_ENOMEM;
  return ORFEAS_PL_OK;
}

/* Positions in metres into pm, then normals after them (3 * nverts floats
 * each); POSITION's min/max from the very floats written. */
static orfeas_pl_code glb_vertices(const orfeas_pl_mesh *m, glb_layout *L,
                                   float *pm) {
  for (int k = 0; k < 3; k++) {
    L->lo[k] = INFINITY;
    L->hi[k] = -INFINITY;
  }
  for (size_t i = 0; i < (size_t)m->nverts * 3; i++) {
    float f = m->pos[i] * 0.001f;
    if (!isfinite(f)) /* JSON has no NaN or Inf for min/max */
      return ORFEAS_PL_EINVAL;
    pm[i] = f;
    if (f < L->lo[i % 3])
      L->lo[i % 3] = f;
    if (f > L->hi[i % 3])
      L->hi[i % 3] = f;
  }
  return vertex_normals(m, pm + (size_t)m->nverts * 3);
}

/* The JSON chunk's text (unpadded): one mesh, its buffer views in BIN
 * order, its accessors. */
static orfeas_pl_code glb_json(const orfeas_pl_mesh *m, const glb_layout *L,
                               orfeas_pl_buffer *js) {
  size_t o_nrm = L->pos_len, o_col = o_nrm + L->nrm_len;
  size_t o_idx = o_col + L->col_len;
  orfeas_pl_code rc = pl_buf_printf(
      js,
      "{\"asset\":{\"version\":\"2.0\",\"generator\":\"ORFEAS pipeline\"},"
      "\"scene\":0,\"scenes\":[{\"nodes\":[0]}],\"nodes\":[{\"mesh\":0}],"
      "\"meshes\":[{\"primitives\":[{\"attributes\":{\"POSITION\":0,"
      "\"NORMAL\":1%s},\"indices\":%d,\"mode\":4}]}],"
      "\"buffers\":[{\"byteLength\":%zu}],",
      L->rgb ? ",\"COLOR_0\":2" : "", L->rgb ? 3 : 2, L->bin_len);
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_printf(
        js,
        "\"bufferViews\":[{\"buffer\":0,\"byteOffset\":0,\"byteLength\":%zu,"
        "\"target\":34962},{\"buffer\":0,\"byteOffset\":%zu,"
        "\"byteLength\":%zu,\"target\":34962},",
        L->pos_len, o_nrm, L->nrm_len);
  if (rc == ORFEAS_PL_OK && L->rgb)
    rc = pl_buf_printf(js,
                       "{\"buffer\":0,\"byteOffset\":%zu,\"byteLength\":%zu,"
                       "\"target\":34962},",
                       o_col, L->col_len);
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_printf(js,
                       "{\"buffer\":0,\"byteOffset\":%zu,\"byteLength\":%zu,"
                       "\"target\":34963}],",
                       o_idx, L->idx_len);
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_printf(
        js,
        "\"accessors\":[{\"bufferView\":0,\"componentType\":5126,"
        "\"count\":%u,\"type\":\"VEC3\",\"min\":[%.17g,%.17g,%.17g],"
        "\"max\":[%.17g,%.17g,%.17g]},{\"bufferView\":1,"
        "\"componentType\":5126,\"count\":%u,\"type\":\"VEC3\"},",
        L->nverts, (double)L->lo[0], (double)L->lo[1], (double)L->lo[2],
        (double)L->hi[0], (double)L->hi[1], (double)L->hi[2], L->nverts);
  if (rc == ORFEAS_PL_OK && L->rgb)
    rc = pl_buf_printf(js,
                       "{\"bufferView\":2,\"componentType\":5121,"
                       "\"normalized\":true,\"count\":%u,\"type\":\"VEC4\"},",
                       L->nverts);
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_printf(js,
                       "{\"bufferView\":%d,\"componentType\":%d,\"count\":%zu,"
                       "\"type\":\"SCALAR\"}]}",
                       L->rgb ? 3 : 2, L->wide ? 5125 : 5123,
                       (size_t)m->ntris * 3);
  return rc;
}

/* The BIN chunk at p (its 8-byte header, then positions, normals, colours,
 * indices, zero padding): L->bin_len + 8 bytes. */
static void glb_bin(const orfeas_pl_mesh *m, const glb_layout *L,
                    const float *pm, uint8_t *p) {
  pl_put_u32(p, (uint32_t)L->bin_len);
  pl_put_u32(p + 4, GLB_BIN);
  p += 8;
  for (size_t i = 0; i < (size_t)L->nverts * 6; i++, p += 4)
    pl_put_f32(p, pm[i]); /* positions, then the normals right after them */
  if (L->rgb)
    for (uint32_t v = 0; v < L->nverts; v++, p += 4) {
      memcpy(p, m->rgb + (size_t)v * 3, 3);
      p[3] = 255;
    }
  for (size_t i = 0; i < (size_t)m->ntris * 3; i++) {
    if (L->wide) {
      pl_put_u32(p, m->idx[i]);
      p += 4;
    } else {
      pl_put_u16(p, (uint16_t)m->idx[i]);
      p += 2;
    }
  }
  memset(p, 0, pad4(L->idx_len) - L->idx_len);
}

orfeas_pl_code pl_write_glb(const orfeas_pl_mesh *m, orfeas_pl_buffer *b) {
  glb_layout L;
  orfeas_pl_code rc = glb_layout_of(m, &L);
  if (rc != ORFEAS_PL_OK)
    return rc;
  float *pm = malloc(L.pos_len + L.nrm_len); /* positions, then normals */
  if (pm == NULL)
    return ORFEAS_PL_ENOMEM;
  orfeas_pl_buffer js = {0};
  rc = glb_vertices(m, &L, pm);
  if (rc == ORFEAS_PL_OK)
    rc = glb_json(m, &L, &js);
  size_t json_len = pad4(js.size);
  size_t total = 12 + 8 + json_len + 8 + L.bin_len;
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_reserve(b, total);
  if (rc == ORFEAS_PL_OK) {
    uint8_t *p = b->data + b->size;
    pl_put_u32(p, GLB_MAGIC);
    pl_put_u32(p + 4, 2);
    pl_put_u32(p + 8, (uint32_t)total);
    pl_put_u32(p + 12, (uint32_t)json_len);
    pl_put_u32(p + 16, GLB_JSON);
    memcpy(p + 20, js.data, js.size);
    memset(p + 20 + js.size, ' ', json_len - js.size);
    glb_bin(m, &L, pm, p + 20 + json_len);
    b->size += total;
  }
  free(pm);
  orfeas_pl_buffer_free(&js);
  return rc;
}
