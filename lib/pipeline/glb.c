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
  double *acc = calloc((size_t)m->nverts * 3 + 1, sizeof *acc);
  if (acc == NULL)
    return ORFEAS_PL_ENOMEM;
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

orfeas_pl_code pl_write_glb(const orfeas_pl_mesh *m, orfeas_pl_buffer *b) {
  if (m->ntris == 0 || m->nverts == 0)
    return ORFEAS_PL_EINVAL;
  uint32_t V = m->nverts;
  int rgb = m->rgb != NULL;
  int wide = V >= 65536;
  size_t pos_len = (size_t)V * 12, nrm_len = pos_len;
  size_t col_len = rgb ? (size_t)V * 4 : 0;
  size_t idx_len = (size_t)m->ntris * 3 * (wide ? 4 : 2);
  size_t bin_len = pos_len + nrm_len + col_len + pad4(idx_len);
  if (bin_len > UINT32_MAX / 2)
    return ORFEAS_PL_ENOMEM;

  /* Positions in metres first, so min/max come from the written floats. */
  float *pm = malloc(pos_len + nrm_len);
  if (pm == NULL)
    return ORFEAS_PL_ENOMEM;
  float *nm = pm + (size_t)V * 3;
  float lo[3] = {INFINITY, INFINITY, INFINITY};
  float hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  for (size_t i = 0; i < (size_t)V * 3; i++) {
    float f = m->pos[i] * 0.001f;
    if (!isfinite(f)) { /* JSON has no NaN or Inf for min/max */
      free(pm);
      return ORFEAS_PL_EINVAL;
    }
    pm[i] = f;
    if (f < lo[i % 3])
      lo[i % 3] = f;
    if (f > hi[i % 3])
      hi[i % 3] = f;
  }
  orfeas_pl_code rc = vertex_normals(m, nm);
  if (rc != ORFEAS_PL_OK) {
    free(pm);
    return rc;
  }

  orfeas_pl_buffer js = {0};
  size_t o_nrm = pos_len, o_col = o_nrm + nrm_len, o_idx = o_col + col_len;
  rc = pl_buf_printf(
      &js,
      "{\"asset\":{\"version\":\"2.0\",\"generator\":\"ORFEAS pipeline\"},"
      "\"scene\":0,\"scenes\":[{\"nodes\":[0]}],\"nodes\":[{\"mesh\":0}],"
      "\"meshes\":[{\"primitives\":[{\"attributes\":{\"POSITION\":0,"
      "\"NORMAL\":1%s},\"indices\":%d,\"mode\":4}]}],"
      "\"buffers\":[{\"byteLength\":%zu}],",
      rgb ? ",\"COLOR_0\":2" : "", rgb ? 3 : 2, bin_len);
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_printf(
        &js,
        "\"bufferViews\":[{\"buffer\":0,\"byteOffset\":0,\"byteLength\":%zu,"
        "\"target\":34962},{\"buffer\":0,\"byteOffset\":%zu,"
        "\"byteLength\":%zu,\"target\":34962},",
        pos_len, o_nrm, nrm_len);
  if (rc == ORFEAS_PL_OK && rgb)
    rc = pl_buf_printf(&js,
                       "{\"buffer\":0,\"byteOffset\":%zu,\"byteLength\":%zu,"
                       "\"target\":34962},",
                       o_col, col_len);
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_printf(&js,
                       "{\"buffer\":0,\"byteOffset\":%zu,\"byteLength\":%zu,"
                       "\"target\":34963}],",
                       o_idx, idx_len);
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_printf(
        &js,
        "\"accessors\":[{\"bufferView\":0,\"componentType\":5126,"
        "\"count\":%u,\"type\":\"VEC3\",\"min\":[%.17g,%.17g,%.17g],"
        "\"max\":[%.17g,%.17g,%.17g]},{\"bufferView\":1,"
        "\"componentType\":5126,\"count\":%u,\"type\":\"VEC3\"},",
        V, (double)lo[0], (double)lo[1], (double)lo[2], (double)hi[0],
        (double)hi[1], (double)hi[2], V);
  if (rc == ORFEAS_PL_OK && rgb)
    rc = pl_buf_printf(&js,
                       "{\"bufferView\":2,\"componentType\":5121,"
                       "\"normalized\":true,\"count\":%u,\"type\":\"VEC4\"},",
                       V);
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_printf(&js,
                       "{\"bufferView\":%d,\"componentType\":%d,\"count\":%zu,"
                       "\"type\":\"SCALAR\"}]}",
                       rgb ? 3 : 2, wide ? 5125 : 5123,
                       (size_t)m->ntris * 3);
  size_t json_len = pad4(js.size);
  size_t total = 12 + 8 + json_len + 8 + bin_len;
  if (rc == ORFEAS_PL_OK)
    rc = pl_buf_reserve(b, total);
  if (rc != ORFEAS_PL_OK) {
    free(pm);
    orfeas_pl_buffer_free(&js);
    return rc;
  }

  uint8_t *p = b->data + b->size;
  pl_put_u32(p, GLB_MAGIC);
  pl_put_u32(p + 4, 2);
  pl_put_u32(p + 8, (uint32_t)total);
  pl_put_u32(p + 12, (uint32_t)json_len);
  pl_put_u32(p + 16, GLB_JSON);
  memcpy(p + 20, js.data, js.size);
  memset(p + 20 + js.size, ' ', json_len - js.size);
  p += 20 + json_len;
  pl_put_u32(p, (uint32_t)bin_len);
  pl_put_u32(p + 4, GLB_BIN);
  p += 8;
  for (size_t i = 0; i < (size_t)V * 6; i++, p += 4)
    pl_put_f32(p, pm[i]); /* positions then normals: pm and nm are adjacent */
  if (rgb)
    for (uint32_t v = 0; v < V; v++, p += 4) {
      memcpy(p, m->rgb + (size_t)v * 3, 3);
      p[3] = 255;
    }
  for (size_t i = 0; i < (size_t)m->ntris * 3; i++) {
    if (wide) {
      pl_put_u32(p, m->idx[i]);
      p += 4;
    } else {
      pl_put_u16(p, (uint16_t)m->idx[i]);
      p += 2;
    }
  }
  memset(p, 0, pad4(idx_len) - idx_len);
  b->size += total;
  free(pm);
  orfeas_pl_buffer_free(&js);
  return ORFEAS_PL_OK;
}
