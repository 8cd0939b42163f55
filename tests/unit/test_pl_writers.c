/* test_pl_writers.c: mesh_export. Byte-level layouts of STL, PLY, OBJ and
 * GLB on a cube whose every value is known: sizes, headers, counts, unit
 * normals, exact POSITION min/max, 4-byte aligned GLB chunks, and the index
 * width switch at 65,536 vertices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orfeas/pipeline.h"
#include "pl_meshes.h"

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static float rdf(const uint8_t *p) {
  uint32_t u = rd32(p);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void write(const orfeas_pl_mesh *m, orfeas_pl_format f,
                  orfeas_pl_buffer *b) {
  memset(b, 0, sizeof *b);
  assert_int_equal(orfeas_pl_write(m, f, b), ORFEAS_PL_OK);
  assert_non_null(b->data);
}

static void test_stl(void **s) {
  (void)s;
  orfeas_pl_mesh m;
  cube_mesh(&m, 10, 1, 0);
  orfeas_pl_buffer b;
  write(&m, ORFEAS_PL_STL, &b);
  assert_int_equal(b.size, 84 + 50 * 12);
  assert_memory_not_equal(b.data, "solid", 5);
  assert_int_equal(rd32(b.data + 80), 12);
  for (int t = 0; t < 12; t++) {
    const uint8_t *r = b.data + 84 + 50 * t;
    float n[3] = {rdf(r), rdf(r + 4), rdf(r + 8)};
    assert_float_equal(n[0] * n[0] + n[1] * n[1] + n[2] * n[2], 1, 1e-6);
    assert_int_equal(r[48] | r[49], 0);
  }
  /* Face 0 is the bottom: normal -Z, first vertex the origin, second
   * vertex (10,10,0). */
  assert_float_equal(rdf(b.data + 84 + 8), -1, 1e-7);
  assert_float_equal(rdf(b.data + 84 + 24), 10, 0);
  assert_float_equal(rdf(b.data + 84 + 28), 10, 0);
  orfeas_pl_buffer_free(&b);
  assert_null(b.data);
  orfeas_pl_mesh_free(&m);
}

static void test_ply(void **s) {
  (void)s;
  orfeas_pl_mesh m;
  cube_mesh(&m, 10, 1, 1);
  orfeas_pl_buffer b;
  write(&m, ORFEAS_PL_PLY, &b);
  const char *end = strstr((const char *)b.data, "end_header\n");
  assert_non_null(end);
  size_t head = (size_t)(end - (const char *)b.data) + 11;
  char *h = strndup((const char *)b.data, head);
  assert_non_null(strstr(h, "format binary_little_endian 1.0\n"));
  assert_non_null(strstr(h, "element vertex 8\n"));
  assert_non_null(strstr(h, "property uchar red\n"));
  assert_non_null(strstr(h, "element face 12\n"));
  free(h);
  assert_int_equal(b.size, head + 8 * 15 + 12 * 13);
  /* Vertex 1 = (10,0,0) with colour (30,31,32); face 0 = 3 0 2 1. */
  const uint8_t *v1 = b.data + head + 15;
  assert_float_equal(rdf(v1), 10, 0);
  assert_int_equal(v1[12], 30);
  assert_int_equal(v1[14], 32);
  const uint8_t *f0 = b.data + head + 8 * 15;
  assert_int_equal(f0[0], 3);
  assert_int_equal(rd32(f0 + 1), 0);
  assert_int_equal(rd32(f0 + 5), 2);
  assert_int_equal(rd32(f0 + 9), 1);
  orfeas_pl_buffer_free(&b);
  orfeas_pl_mesh_free(&m);
}

static void test_obj(void **s) {
  (void)s;
  orfeas_pl_mesh m;
  cube_mesh(&m, 10, 1, 0);
  m.pos[3] = -1.23456f; /* a negative value with rounding */
  orfeas_pl_buffer b;
  write(&m, ORFEAS_PL_OBJ, &b);
  char *text = strndup((const char *)b.data, b.size);
  int nv = 0, nf = 0;
  for (char *line = text; line && *line;) {
    char *nl = strchr(line, '\n');
    nv += line[0] == 'v' && line[1] == ' ';
    nf += line[0] == 'f' && line[1] == ' ';
    line = nl ? nl + 1 : NULL;
  }
  assert_int_equal(nv, 8);
  assert_int_equal(nf, 12);
  assert_non_null(strstr(text, "\nv 0.0000 0.0000 0.0000\n"));
  assert_non_null(strstr(text, "\nv -1.2346 0.0000 0.0000\n"));
  assert_non_null(strstr(text, "\nf 1 3 2\n")); /* 1-based */
  free(text);
  orfeas_pl_buffer_free(&b);
  /* Out-of-range and NaN coordinates are clamped, not undefined. */
  m.pos[0] = 1e30f;
  m.pos[1] = NAN;
  write(&m, ORFEAS_PL_OBJ, &b);
  assert_memory_equal(strstr((const char *)b.data, "\nv ") + 1,
                      "v 1000000000000.0000 0.0000 ", 28);
  orfeas_pl_buffer_free(&b);
  /* GLB refuses them: its JSON min/max cannot hold NaN. */
  assert_int_equal(orfeas_pl_write(&m, ORFEAS_PL_GLB, &b), ORFEAS_PL_EINVAL);
  orfeas_pl_mesh_free(&m);
}

/* Parses a GLB's chunks; returns the JSON (malloc'd) and the BIN chunk. */
static char *glb_chunks(const orfeas_pl_buffer *b, const uint8_t **bin,
                        uint32_t *bin_len) {
  assert_int_equal(rd32(b->data), 0x46546C67);
  assert_int_equal(rd32(b->data + 4), 2);
  assert_int_equal(rd32(b->data + 8), b->size);
  uint32_t jl = rd32(b->data + 12);
  assert_int_equal(jl % 4, 0);
  assert_int_equal(rd32(b->data + 16), 0x4E4F534A);
  *bin_len = rd32(b->data + 20 + jl);
  assert_int_equal(*bin_len % 4, 0);
  assert_int_equal(rd32(b->data + 24 + jl), 0x004E4942);
  assert_int_equal(28 + jl + *bin_len, b->size);
  *bin = b->data + 28 + jl;
  return strndup((const char *)b->data + 20, jl);
}

static void test_glb(void **s) {
  (void)s;
  orfeas_pl_mesh m;
  cube_mesh(&m, 10, 1, 1);
  m.pos[0] = -3.3f; /* min x is not a round number */
  orfeas_pl_buffer b;
  write(&m, ORFEAS_PL_GLB, &b);
  const uint8_t *bin;
  uint32_t bl;
  char *json = glb_chunks(&b, &bin, &bl);
  /* POSITION min/max exactly as the floats written (metres). */
  char want[200];
  snprintf(want, sizeof want, "\"min\":[%.17g,0,0]", (double)(-3.3f * 0.001f));
  assert_non_null(strstr(json, want));
  snprintf(want, sizeof want, "\"max\":[%.17g,%.17g,%.17g]",
           (double)(10 * 0.001f), (double)(10 * 0.001f), (double)(10 * 0.001f));
  assert_non_null(strstr(json, want));
  assert_float_equal(rdf(bin), -3.3f * 0.001f, 0);
  assert_non_null(strstr(json, "\"COLOR_0\":2"));
  assert_non_null(strstr(json, "\"componentType\":5123")); /* uint16 */
  assert_null(strstr(json, "\"uri\""));
  /* Normals follow positions and are unit length. */
  for (uint32_t v = 0; v < 8; v++) {
    const uint8_t *n = bin + 8 * 12 + v * 12;
    float x = rdf(n), y = rdf(n + 4), z = rdf(n + 8);
    assert_float_equal(sqrtf(x * x + y * y + z * z), 1, 1e-6);
  }
  /* Index bytes: 36 x 2 = 72, already aligned; then the colours. */
  assert_int_equal(bl, 8 * 12 * 2 + 8 * 4 + 72);
  free(json);
  orfeas_pl_buffer_free(&b);
  orfeas_pl_mesh_free(&m);

  /* 65,536 vertices and more switch the indices to uint32; an odd index
   * byte count gets zero padding. */
  orfeas_pl_mesh big;
  assert_int_equal(orfeas_pl_mesh_alloc(&big, 70000, 1, 0), ORFEAS_PL_OK);
  for (uint32_t i = 0; i < 70000 * 3; i++)
    big.pos[i] = (float)(i % 7);
  big.idx[0] = 0, big.idx[1] = 1, big.idx[2] = 69999;
  write(&big, ORFEAS_PL_GLB, &b);
  /* A large output starts 4 KiB-aligned (orfeasd's O_DIRECT writes). */
  assert_true(b.size >= 65536 && (uintptr_t)b.data % 4096 == 0);
  json = glb_chunks(&b, &bin, &bl);
  assert_non_null(strstr(json, "\"componentType\":5125"));
  assert_null(strstr(json, "COLOR_0"));
  free(json);
  orfeas_pl_buffer_free(&b);
  big.idx[2] = 2;
  big.nverts = 3;
  write(&big, ORFEAS_PL_GLB, &b); /* 3 uint16 = 6 bytes, padded to 8 */
  json = glb_chunks(&b, &bin, &bl);
  assert_int_equal(bl, 3 * 24 + 8);
  assert_int_equal(bin[3 * 24 + 6] | bin[3 * 24 + 7], 0);
  free(json);
  orfeas_pl_buffer_free(&b);
  /* An empty mesh has nothing to put in an accessor. */
  big.ntris = 0;
  assert_int_equal(orfeas_pl_write(&big, ORFEAS_PL_GLB, &b), ORFEAS_PL_EINVAL);
  assert_int_equal(orfeas_pl_write(&big, (orfeas_pl_format)9, &b),
                   ORFEAS_PL_EINVAL);
  orfeas_pl_mesh_free(&big);
}

static void test_names(void **s) {
  (void)s;
  assert_string_equal(orfeas_pl_format_name(ORFEAS_PL_GLB), "glb");
  assert_string_equal(orfeas_pl_format_mime(ORFEAS_PL_GLB),
                      "model/gltf-binary");
  assert_string_equal(orfeas_pl_format_mime(ORFEAS_PL_PLY), "application/ply");
  assert_null(orfeas_pl_format_name((orfeas_pl_format)4));
  assert_string_equal(orfeas_pl_mode_name(ORFEAS_PL_MODE_RELIEF), "relief");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stl),   cmocka_unit_test(test_ply),
      cmocka_unit_test(test_obj),   cmocka_unit_test(test_glb),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
