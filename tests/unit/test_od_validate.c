/* orfeasd input checks: UUIDs, file names, the generate-3d body, and the
 * multipart parser on good and hostile bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "orfeasd.h"

static void test_uuid(void **state) {
  (void)state;
  assert_true(od_uuid_valid("123e4567-e89b-42d3-a456-426614174000"));
  assert_true(od_uuid_valid("123E4567-E89B-42D3-A456-426614174000"));
  const char *bad[] = {"",
                       "123e4567-e89b-42d3-a456-42661417400",
                       "123e4567-e89b-42d3-a456-4266141740000",
                       "123e4567xe89b-42d3-a456-426614174000",
                       "../../etc/passwd",
                       "123e4567-e89b-42d3-a456-42661417400g",
                       "123e4567-e89b-42d3-a456-426614174000/..",
                       NULL};
  for (int i = 0; bad[i]; i++)
    assert_false(od_uuid_valid(bad[i]));
  assert_false(od_uuid_valid(NULL));
  /* A client's id in the stored (lower) case, in place too; a bad one
   * leaves the output as it was. */
  char c[37] = "untouched", in[256] = "123E4567-e89B-42D3-A456-426614174ABC";
  assert_true(od_uuid_canon(in, c));
  assert_string_equal(c, "123e4567-e89b-42d3-a456-426614174abc");
  assert_true(od_uuid_canon(in, in));
  assert_string_equal(in, "123e4567-e89b-42d3-a456-426614174abc");
  snprintf(c, sizeof c, "untouched");
  for (int i = 0; bad[i]; i++)
    assert_false(od_uuid_canon(bad[i], c));
  assert_false(od_uuid_canon(NULL, c));
  assert_string_equal(c, "untouched");
  char a[37], b[37];
  assert_int_equal(od_uuid_new(a), 0);
  assert_int_equal(od_uuid_new(b), 0);
  assert_true(od_uuid_valid(a));
  assert_int_equal(a[14], '4'); /* version 4 */
  assert_string_not_equal(a, b);
}

/* Whole, valid UTF-8 characters only, never past max or a NUL. */
static void test_utf8_prefix(void **state) {
  (void)state;
  struct {
    const char *s;
    size_t max, want;
  } cases[] = {
      {"abc", 40, 3},
      {"abc", 2, 2},
      {"a\xc3\xa9", 3, 3},     /* a + e acute */
      {"a\xc3\xa9", 2, 1},     /* the acute cut in half */
      {"\xe2\x82\xac!", 3, 3}, /* the euro sign */
      {"\xe2\x82\xac!", 2, 0},
      {"\xf0\x9f\x98\x80x", 4, 4}, /* an emoji */
      {"\xf0\x9f\x98\x80x", 3, 0},
      {"ab\xc3", 40, 2},            /* a lead byte at the end */
      {"a\xc0\xaf", 40, 1},         /* overlong '/' */
      {"a\xe0\x80\xaf", 40, 1},     /* overlong, 3 bytes */
      {"a\xed\xa0\x80", 40, 1},     /* a surrogate */
      {"a\xf4\x90\x80\x80", 40, 1}, /* past U+10FFFF */
      {"a\x80"
       "b",
       40, 1},           /* a stray continuation byte */
      {"a\xc3(", 40, 1}, /* a lead byte, no continuation */
      {"", 40, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t got = od_utf8_prefix(cases[i].s, cases[i].max);
    if (got != cases[i].want)
      fail_msg("case %zu: %zu, wanted %zu", i, got, cases[i].want);
  }
}

static void test_filenames(void **state) {
  (void)state;
  char out[32];
  struct {
    const char *in;
    const char *want;
  } cases[] = {
      {"star.png", "star.png"},
      {"../../etc/passwd", "passwd"},
      {"C:\\Users\\x\\my pic.jpg", "my_pic.jpg"},
      {"..", "upload"},
      {".hidden", "upload"},
      {"", "upload"},
      {"a/", "upload"},
      {"\xc3\xa9t\xc3\xa9.png", "__t__.png"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    od_filename_sanitize(cases[i].in, strlen(cases[i].in), out, sizeof out);
    assert_string_equal(out, cases[i].want);
  }
  od_filename_sanitize("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 44, out,
                       sizeof out);
  assert_int_equal(strlen(out), sizeof out - 1);
  assert_true(od_filename_plain("model_x.stl"));
  assert_false(od_filename_plain(".."));
  assert_false(od_filename_plain("a/b"));
  assert_false(od_filename_plain("a\\b"));
  assert_false(od_filename_plain(""));
  assert_false(od_filename_plain(".htaccess"));
}

static void test_generate_ok(void **state) {
  (void)state;
  od_generate_req r;
  od_field_error e[OD_MAX_FIELD_ERRORS];
  const char *body =
      "{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"format\":\"glb\","
      "\"dimensions\":{\"width\":50,\"height\":60.5,\"depth\":10},"
      "\"quality\":3,\"mode\":\"relief\"}";
  assert_int_equal(
      od_generate_parse(body, strlen(body), &r, e, OD_MAX_FIELD_ERRORS), 0);
  assert_int_equal(r.format, ORFEAS_PL_GLB);
  assert_int_equal(r.mode, ORFEAS_PL_MODE_RELIEF);
  assert_int_equal(r.quality, 3);
  assert_true(r.height == 60.5 && r.depth == 10);
  const char *minimal = "{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\"}";
  assert_int_equal(
      od_generate_parse(minimal, strlen(minimal), &r, e, OD_MAX_FIELD_ERRORS),
      0);
  assert_int_equal(r.format, ORFEAS_PL_STL); /* the original's defaults */
  assert_int_equal(r.quality, 7);
  assert_true(r.width == 100 && r.height == 100 && r.depth == 20);
  assert_int_equal(r.unknown_fields, 0);
}

/* Numbers the original's pydantic (lax mode) took: "7" and 7.0 for the
 * integer quality, numeric strings for the dimensions. */
static void test_generate_lax(void **state) {
  (void)state;
  od_generate_req r;
  od_field_error e[OD_MAX_FIELD_ERRORS];
  const char *body =
      "{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"quality\":\"4\","
      "\"dimensions\":{\"width\":\" 256 \",\"height\":\"60.5\",\"depth\":"
      "\"+20\"}}";
  assert_int_equal(
      od_generate_parse(body, strlen(body), &r, e, OD_MAX_FIELD_ERRORS), 0);
  assert_int_equal(r.quality, 4);
  assert_true(r.width == 256 && r.height == 60.5 && r.depth == 20);
  const char *real = "{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\","
                     "\"quality\":9.0}";
  assert_int_equal(
      od_generate_parse(real, strlen(real), &r, e, OD_MAX_FIELD_ERRORS), 0);
  assert_int_equal(r.quality, 9);
}

/* Unknown fields are ignored and counted, as the original API ignored them;
 * a known field next to them still counts and is still checked. */
static void test_generate_unknown_fields(void **state) {
  (void)state;
  od_generate_req r;
  od_field_error e[OD_MAX_FIELD_ERRORS];
  const char *body =
      "{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"method\":\"x\","
      "\"mesh_format\":\"obj\",\"format\":\"ply\","
      "\"dimensions\":{\"width\":50,\"scale\":2}}";
  assert_int_equal(
      od_generate_parse(body, strlen(body), &r, e, OD_MAX_FIELD_ERRORS), 0);
  assert_int_equal(r.unknown_fields, 3);
  assert_int_equal(r.format, ORFEAS_PL_PLY);
  assert_true(r.width == 50);
  const char *bad =
      "{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"x\":1,"
      "\"quality\":11}";
  assert_int_equal(
      od_generate_parse(bad, strlen(bad), &r, e, OD_MAX_FIELD_ERRORS), 1);
  assert_string_equal(e[0].field, "quality");
  assert_int_equal(r.unknown_fields, 1);
}

static void test_generate_errors(void **state) {
  (void)state;
  struct {
    const char *body;
    const char *field;
    const char *type;
  } cases[] = {
      {"{", "body", "invalid_json"},
      {"[]", "body", "type"},
      {"{\"job_id\":\"x\"}", "job_id", "invalid_uuid"},
      {"{}", "job_id", "missing"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"format\":"
       "\"fbx\"}",
       "format", "invalid"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"quality\":0}",
       "quality", "out_of_range"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"quality\":2.5}",
       "quality", "type"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"dimensions\":{"
       "\"depth\":501}}",
       "depth", "out_of_range"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"dimensions\":{"
       "\"width\":\"nine\"}}",
       "width", "type"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"dimensions\":{"
       "\"width\":\"0x10\"}}",
       "width", "type"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"dimensions\":{"
       "\"height\":\"inf\"}}",
       "height", "type"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"dimensions\":{"
       "\"depth\":\"9 mm\"}}",
       "depth", "type"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"quality\":"
       "\"7.5\"}",
       "quality", "type"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"quality\":"
       "\"\"}",
       "quality", "type"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"quality\":true}",
       "quality", "type"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"quality\":"
       "\"11\"}",
       "quality", "out_of_range"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"dimensions\":[]"
       "}",
       "dimensions", "type"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"mode\":"
       "\"melt\"}",
       "mode", "invalid"},
      {"{\"job_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"format\":"
       "\"stl\",\"format\":\"obj\"}",
       "body", "invalid_json"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    od_generate_req r;
    od_field_error e[OD_MAX_FIELD_ERRORS];
    int n = od_generate_parse(cases[i].body, strlen(cases[i].body), &r, e,
                              OD_MAX_FIELD_ERRORS);
    if (n < 1 || strcmp(e[0].field, cases[i].field) ||
        strcmp(e[0].error_type, cases[i].type))
      fail_msg("case %zu (%s): got %d errors, first %s/%s", i, cases[i].body, n,
               n ? e[0].field : "-", n ? e[0].error_type : "-");
    assert_true(strlen(e[0].message) > 0);
  }
}

static void test_multipart(void **state) {
  (void)state;
  char b[80];
  assert_int_equal(
      od_multipart_boundary("multipart/form-data; boundary=abc", b, sizeof b),
      0);
  assert_string_equal(b, "abc");
  assert_int_equal(
      od_multipart_boundary("multipart/form-data; charset=x; BOUNDARY=\"q r\"",
                            b, sizeof b),
      0);
  assert_string_equal(b, "q r");
  assert_int_equal(
      od_multipart_boundary("text/plain; boundary=abc", b, sizeof b), -1);
  assert_int_equal(od_multipart_boundary("multipart/form-data", b, sizeof b),
                   -1);
  assert_int_equal(od_multipart_boundary(NULL, b, sizeof b), -1);

  const char body[] =
      "preamble\r\n--XX\r\nContent-Disposition: form-data; "
      "name=\"other\"\r\n\r\nzz\r\n"
      "--XX\r\nContent-Disposition: form-data; name=\"image\"; "
      "filename=\"a\\\"b.png\"\r\n"
      "Content-Type: image/png\r\n\r\n\x89PNG\r\n--X\r\n--XX--\r\n";
  od_multipart_part p;
  char err[128];
  assert_int_equal(od_multipart_find((const uint8_t *)body, sizeof body - 1,
                                     "XX", "image", &p, err, sizeof err),
                   0);
  assert_true(p.found);
  assert_int_equal(p.len, 9); /* up to the CRLF before "--XX" */
  assert_memory_equal(p.data, "\x89PNG\r\n--X", 9);
  assert_string_equal(p.filename, "a\"b.png");
  assert_int_equal(od_multipart_find((const uint8_t *)body, sizeof body - 1,
                                     "XX", "nope", &p, err, sizeof err),
                   0);
  assert_false(p.found);
  /* A field named filename= must not match name=. */
  const char tricky[] = "--B\r\nContent-Disposition: form-data; "
                        "filename=\"image\"\r\n\r\nx\r\n--B--";
  assert_int_equal(od_multipart_find((const uint8_t *)tricky, sizeof tricky - 1,
                                     "B", "image", &p, err, sizeof err),
                   0);
  assert_false(p.found);
  /* A parameter is never read out of another's quoted value: a file named
   * 'my name=x.png' (filename first, as some clients write it), or one
   * that spells a second filename. */
  const char quoted[] =
      "--B\r\nContent-Disposition: form-data; filename=\"my name=x; "
      "filename=evil.png\"; name=\"image\"\r\n\r\nx\r\n--B--";
  assert_int_equal(od_multipart_find((const uint8_t *)quoted, sizeof quoted - 1,
                                     "B", "image", &p, err, sizeof err),
                   0);
  assert_true(p.found);
  assert_string_equal(p.filename, "my name=x; filename=evil.png");
  const char quoted2[] =
      "--B\r\nContent-Disposition: form-data; name=\"other\"; "
      "filename=\"a; name=image\"\r\n\r\nx\r\n--B--";
  assert_int_equal(od_multipart_find((const uint8_t *)quoted2,
                                     sizeof quoted2 - 1, "B", "image", &p, err,
                                     sizeof err),
                   0);
  assert_false(p.found);
  const char *broken[] = {
      "no boundary at all",
      "--B\r\nContent-Disposition: form-data; name=\"image\"\r\n",
      "--B\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\ndata "
      "without end",
      "--Bxx",
      "--B\r\nX-Other: 1\r\n\r\nx\r\n--B--",
  };
  for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
    err[0] = '\0';
    assert_int_equal(od_multipart_find((const uint8_t *)broken[i],
                                       strlen(broken[i]), "B", "image", &p, err,
                                       sizeof err),
                     -1);
    assert_true(strlen(err) > 0);
  }
}

static void test_gzip_negotiation(void **state) {
  (void)state;
  assert_true(od_accepts_gzip("gzip"));
  assert_true(od_accepts_gzip("deflate, gzip;q=0.5"));
  assert_true(od_accepts_gzip("*"));
  assert_false(od_accepts_gzip(NULL));
  assert_false(od_accepts_gzip("identity"));
  assert_false(od_accepts_gzip("gzip;q=0"));
  assert_false(od_accepts_gzip("x-gzip"));
  /* gzip refused by name wins over "*"; q read in any case, only as q. */
  assert_false(od_accepts_gzip("gzip;q=0, *"));
  assert_false(od_accepts_gzip("*, gzip;q=0.000"));
  assert_true(od_accepts_gzip("gzip;Q=0.001"));
  assert_true(od_accepts_gzip("br;q=0, *;q=0.5"));
  assert_false(od_accepts_gzip("*;q=0"));
  assert_true(od_accepts_gzip("gzip;level=q=0"));
  assert_true(od_accepts_gzip("gzip ; q=1.0"));
  assert_false(od_accepts_gzip("gzip;q=0;foo=1"));
  uint8_t *z;
  size_t zl;
  const char text[] = "metric 1\nmetric 1\nmetric 1\n";
  assert_int_equal(od_gzip(text, sizeof text - 1, &z, &zl), 0);
  assert_true(zl > 10 && z[0] == 0x1f && z[1] == 0x8b);
  free(z);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uuid),
      cmocka_unit_test(test_utf8_prefix),
      cmocka_unit_test(test_filenames),
      cmocka_unit_test(test_generate_ok),
      cmocka_unit_test(test_generate_errors),
      cmocka_unit_test(test_generate_lax),
      cmocka_unit_test(test_generate_unknown_fields),
      cmocka_unit_test(test_multipart),
      cmocka_unit_test(test_gzip_negotiation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
