/* test_pl_decode.c: image_loading. Valid PNG/JPEG in every colour type
 * decode to the right pixels; hostile inputs (truncations, bombs, 1x1,
 * 100000x1, random bytes, corrupt data) give clean error codes with a
 * message. Also run under ASan/UBSan (asan.pl_decode). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "orfeas/pipeline.h"
#include "pl_images.h"
#include "pl_meshes.h"

static orfeas_pl_code decode(const uint8_t *d, size_t n, orfeas_pl_image *img,
                             char *msg, size_t len) {
  return orfeas_pl_image_decode(d, n, 0, 0, img, msg, len);
}

static void png_roundtrip(int channels, int alpha) {
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 64, 48, alpha, 1);
  size_t len;
  uint8_t *png = tpl_png(px, 64, 48, channels, &len);
  assert_non_null(png);
  orfeas_pl_image img;
  char msg[256];
  assert_int_equal(decode(png, len, &img, msg, sizeof msg), ORFEAS_PL_OK);
  assert_int_equal(img.width, 64);
  assert_int_equal(img.height, 48);
  assert_int_equal(img.has_alpha, channels == 4);
  /* Pixel values survive: compare a background and an object pixel. */
  for (size_t i = 0; i < (size_t)64 * 48; i += 97) {
    if (channels >= 3)
      assert_memory_equal(img.rgba + i * 4, px + i * 4, 3);
    if (channels == 4)
      assert_int_equal(img.rgba[i * 4 + 3], px[i * 4 + 3]);
    else
      assert_int_equal(img.rgba[i * 4 + 3], 255);
  }
  orfeas_pl_image_free(&img);
  assert_null(img.rgba);
  free(png);
  free(px);
}

static void test_png_rgba(void **s) {
  (void)s;
  png_roundtrip(4, 1);
}
static void test_png_rgb(void **s) {
  (void)s;
  png_roundtrip(3, 0);
}
static void test_png_grey(void **s) {
  (void)s;
  png_roundtrip(1, 0);
}

static void test_jpeg(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_DISKS, 40, 33, 0, 1);
  size_t len;
  uint8_t *jpg = tpl_jpeg(px, 40, 33, &len);
  assert_non_null(jpg);
  orfeas_pl_image img;
  orfeas_pl_image_info info;
  assert_int_equal(orfeas_pl_image_probe(jpg, len, 0, 0, &info, NULL, 0),
                   ORFEAS_PL_OK);
  assert_int_equal(info.type, ORFEAS_PL_IMAGE_JPEG);
  assert_int_equal(info.width, 40);
  assert_int_equal(info.height, 33);
  assert_int_equal(info.has_alpha, 0);
  assert_int_equal(decode(jpg, len, &img, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(img.has_alpha, 0);
  /* JPEG is lossy: a flat background pixel stays within a few levels. */
  assert_in_range(img.rgba[0], 225, 245);
  orfeas_pl_image_free(&img);
  free(jpg);
  free(px);
}

/* Every refusal: the right code, a non-empty message, nothing allocated. */
static void expect_refusal(const uint8_t *d, size_t n, orfeas_pl_code want) {
  orfeas_pl_image img;
  memset(&img, 0xAB, sizeof img);
  char msg[256] = "";
  orfeas_pl_code rc = decode(d, n, &img, msg, sizeof msg);
  assert_int_equal(rc, want);
  assert_true(orfeas_pl_is_client_error(rc));
  assert_true(strlen(msg) > 10);
  assert_null(img.rgba);
  assert_int_equal(img.width, 0);
}

static void test_sizes_refused(void **s) {
  (void)s;
  size_t len;
  uint8_t *png = tpl_png_header_only(1, 1, &len);
  expect_refusal(png, len, ORFEAS_PL_ESIZE);
  free(png);
  png = tpl_png_header_only(100000, 1, &len);
  expect_refusal(png, len, ORFEAS_PL_ESIZE);
  free(png);
  png = tpl_png_header_only(31, 4096, &len);
  expect_refusal(png, len, ORFEAS_PL_ESIZE);
  free(png);
  png = tpl_png_header_only(4097, 32, &len);
  expect_refusal(png, len, ORFEAS_PL_ESIZE);
  free(png);
  /* Sides at the limits pass the header check. */
  orfeas_pl_image_info info;
  png = tpl_png_header_only(4096, 32, &len);
  assert_int_equal(orfeas_pl_image_probe(png, len, 0, 0, &info, NULL, 0),
                   ORFEAS_PL_OK);
  free(png);
}

static void test_pixel_limit(void **s) {
  (void)s;
  size_t len;
  uint8_t *png = tpl_png_header_only(2000, 2000, &len);
  orfeas_pl_image_info info;
  char msg[200];
  /* A service may lower the limit; 4 M pixels > 3 M allowed. */
  assert_int_equal(
      orfeas_pl_image_probe(png, len, 0, 3000000, &info, msg, sizeof msg),
      ORFEAS_PL_EPIXELS);
  assert_non_null(strstr(msg, "4000000"));
  assert_int_equal(info.width, 0); /* zeroed on a refusal */
  /* The default cannot be raised: 0 or a bigger value means 16,777,216. */
  assert_int_equal(
      orfeas_pl_image_probe(png, len, 0, UINT64_MAX, &info, NULL, 0),
      ORFEAS_PL_OK);
  free(png);
}

/* The probe reports what the upload answer needs (type, size, whether the
 * image has transparency) the way the decoder would see it, without
 * decoding: every PNG colour type, tRNS, and JPEG above. */
static void probe_png(int channels, int trns, int want_alpha) {
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 64, 48, 1, 1);
  size_t len;
  uint8_t *png = trns ? tpl_png_trns(px, 64, 48, &len)
                      : tpl_png(px, 64, 48, channels, &len);
  assert_non_null(png);
  orfeas_pl_image_info info;
  assert_int_equal(orfeas_pl_image_probe(png, len, 0, 0, &info, NULL, 0),
                   ORFEAS_PL_OK);
  assert_int_equal(info.type, ORFEAS_PL_IMAGE_PNG);
  assert_string_equal(orfeas_pl_image_type_name(info.type), "PNG");
  assert_int_equal(info.width, 64);
  assert_int_equal(info.height, 48);
  assert_int_equal(info.has_alpha, want_alpha);
  orfeas_pl_image img;
  assert_int_equal(decode(png, len, &img, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(img.has_alpha, want_alpha); /* the decoder agrees */
  orfeas_pl_image_free(&img);
  free(png);
  free(px);
}

static void probe_reports_png_transparency(void **s) {
  (void)s;
  probe_png(1, 0, 0);
  probe_png(2, 0, 1); /* grey + alpha */
  probe_png(3, 0, 0);
  probe_png(4, 0, 1);
  probe_png(3, 1, 1); /* RGB + tRNS */
}

static void probe_refuses_what_decode_refuses(void **s) {
  (void)s;
  orfeas_pl_image_info info;
  char msg[200] = "";
  const uint8_t pdf[] = "%PDF-1.7 not an image";
  assert_int_equal(
      orfeas_pl_image_probe(pdf, sizeof pdf, 0, 0, &info, msg, sizeof msg),
      ORFEAS_PL_EFORMAT);
  assert_true(strlen(msg) > 10);
  assert_int_equal(info.type, 0);
  assert_string_equal(orfeas_pl_image_type_name(info.type), "unknown");
  size_t len;
  uint8_t *png = tpl_png_header_only(1, 1, &len);
  assert_int_equal(orfeas_pl_image_probe(png, len, 0, 0, &info, NULL, 0),
                   ORFEAS_PL_ESIZE);
  free(png);
}

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static void test_decompression_bomb(void **s) {
  (void)s;
  /* 60000 x 60000 RGBA would be 14.4 GB; the file is ~150 bytes. */
  size_t len;
  /* Warm up both decoders first: their first call faults in code pages and
   * tables, which would count against the peak below. */
  uint8_t *warm = tpl_draw(TPL_DISKS, 64, 64, 0, 2);
  uint8_t *enc = tpl_png(warm, 64, 64, 4, &len);
  orfeas_pl_image img;
  assert_int_equal(decode(enc, len, &img, NULL, 0), ORFEAS_PL_OK);
  orfeas_pl_image_free(&img);
  free(enc);
  enc = tpl_jpeg(warm, 64, 64, &len);
  assert_int_equal(decode(enc, len, &img, NULL, 0), ORFEAS_PL_OK);
  orfeas_pl_image_free(&img);
  free(enc);
  free(warm);
  uint8_t *png = tpl_png_header_only(60000, 60000, &len);
  assert_true(len < 400);
  long before = peak_rss_kb();
  expect_refusal(png, len, ORFEAS_PL_ESIZE);
  free(png);
  /* The same bomb in JPEG clothing: a real JPEG whose SOF says 60000^2. */
  uint8_t *px = tpl_draw(TPL_DISKS, 64, 64, 0, 2);
  uint8_t *jpg = tpl_jpeg(px, 64, 64, &len);
  for (size_t i = 0; i + 9 < len; i++)
    if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
      jpg[i + 5] = 0xea, jpg[i + 6] = 0x60; /* height 60000 */
      jpg[i + 7] = 0xea, jpg[i + 8] = 0x60; /* width 60000 */
      break;
    }
  expect_refusal(jpg, len, ORFEAS_PL_ESIZE);
  /* 100000 x 1 is beyond a JPEG's 65535, so 65000 x 1 stands in for it. */
  for (size_t i = 0; i + 9 < len; i++)
    if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
      jpg[i + 5] = 0, jpg[i + 6] = 1;
      jpg[i + 7] = 0xfd, jpg[i + 8] = 0xe8;
      break;
    }
  expect_refusal(jpg, len, ORFEAS_PL_ESIZE);
  free(jpg);
  free(px);
  /* Refused before allocating: the peak moved by less than 2 MiB, where
   * decoding either bomb would have touched gigabytes.
   * (ASan's shadow memory moves the peak on its own: plain build only.) */
#ifndef __SANITIZE_ADDRESS__
  assert_true(peak_rss_kb() - before < 2048);
#else
  (void)before;
#endif
}

/* Every prefix of a valid file is refused cleanly; returns how many said
 * "truncated". Prefixes longer than `must_truncate` must say so. */
static int refuse_prefixes(const uint8_t *d, size_t len, size_t must_truncate) {
  int truncated = 0;
  for (size_t cut = 0; cut < len; cut += 1 + cut / 12) {
    orfeas_pl_image img;
    char msg[256] = "";
    orfeas_pl_code rc = decode(d, cut, &img, msg, sizeof msg);
    assert_int_not_equal(rc, ORFEAS_PL_OK);
    assert_true(orfeas_pl_is_client_error(rc));
    assert_true(msg[0] != '\0');
    assert_null(img.rgba);
    if (cut > must_truncate)
      assert_int_equal(rc, ORFEAS_PL_ETRUNCATED);
    truncated += rc == ORFEAS_PL_ETRUNCATED;
  }
  return truncated;
}

/* A 200 MB zTXt in a 32x32 image: the chunk limits stop it inflating
 * (refused as corrupt, naming the limit) with no memory spent on it. */
static void test_chunk_bomb(void **s) {
  (void)s;
  size_t len;
  uint8_t *png = tpl_png_ztxt_bomb((size_t)200 << 20, &len);
  assert_non_null(png);
  assert_true(len < 400000);
  long before = peak_rss_kb();
  orfeas_pl_image img;
  char msg[256] = "";
  orfeas_pl_code rc = decode(png, len, &img, msg, sizeof msg);
  assert_int_equal(rc, ORFEAS_PL_ECORRUPT);
  assert_non_null(strstr(msg, "limits"));
  assert_null(img.rgba);
#ifndef __SANITIZE_ADDRESS__
  assert_true(peak_rss_kb() - before < 16384);
#else
  (void)before;
#endif
  free(png);
}

static void test_truncated_png(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_THIN, 64, 64, 1, 3);
  size_t len;
  uint8_t *png = tpl_png(px, 64, 64, 4, &len);
  assert_true(refuse_prefixes(png, len, 0) > 0);
  free(png);
  free(px);
}

static void test_truncated_jpeg(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 96, 64, 0, 4);
  size_t len;
  uint8_t *jpg = tpl_jpeg(px, 96, 64, &len);
  /* Past the headers (~700 bytes) every cut is reported as truncated. */
  assert_true(refuse_prefixes(jpg, len, 700) > 0);
  free(jpg);
  free(px);
}

static void test_corrupt(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 64, 64, 1, 5);
  size_t len;
  uint8_t *png = tpl_png(px, 64, 64, 4, &len);
  /* A flipped byte inside IDAT breaks its CRC. */
  png[len - 20] ^= 0x5a;
  expect_refusal(png, len, ORFEAS_PL_ECORRUPT);
  free(png);
  uint8_t *jpg = tpl_jpeg(px, 64, 64, &len);
  memset(jpg + 2, 0xff, 40); /* the first segments become fill bytes */
  orfeas_pl_image img;
  orfeas_pl_code rc = decode(jpg, len, &img, NULL, 0);
  assert_true(rc == ORFEAS_PL_ECORRUPT || rc == ORFEAS_PL_ETRUNCATED);
  free(jpg);
  free(px);
}

static void test_random_bytes(void **s) {
  (void)s;
  uint8_t buf[4096];
  uint32_t x = 12345;
  for (int round = 0; round < 300; round++) {
    size_t n = 1 + (size_t)round * 13 % sizeof buf;
    for (size_t i = 0; i < n; i++) {
      buf[i] = (uint8_t)test_rand(&x);
    }
    /* A third of the rounds wear a PNG or JPEG signature, so the decoders
     * themselves see the garbage, not just the sniffer. */
    if (round % 3 == 1 && n >= 8)
      memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    if (round % 3 == 2 && n >= 3)
      memcpy(buf, "\xff\xd8\xff", 3);
    orfeas_pl_image img;
    char msg[256] = "";
    orfeas_pl_code rc = decode(buf, n, &img, msg, sizeof msg);
    assert_int_not_equal(rc, ORFEAS_PL_OK);
    assert_true(orfeas_pl_is_client_error(rc));
    assert_true(msg[0] != '\0');
  }
  /* A GIF signature with no screen descriptor after it: a cut file. */
  expect_refusal((const uint8_t *)"GIF89a....", 10, ORFEAS_PL_ETRUNCATED);
  expect_refusal((const uint8_t *)"not an image at all", 19, ORFEAS_PL_EFORMAT);
  expect_refusal((const uint8_t *)"", 0, ORFEAS_PL_ETRUNCATED);
  expect_refusal((const uint8_t *)"\x89PN", 3, ORFEAS_PL_ETRUNCATED);
}

/* orfeas_pl_image_verify (the upload check): the same verdict as a full
 * decode on whole, cut and damaged files, without the pixels' memory. */
static void verify_agrees(const uint8_t *d, size_t n) {
  orfeas_pl_image img;
  char m1[256] = "", m2[256] = "";
  orfeas_pl_code full = decode(d, n, &img, m1, sizeof m1);
  orfeas_pl_image_free(&img);
  orfeas_pl_code rc = orfeas_pl_image_verify(d, n, 0, 0, m2, sizeof m2);
  assert_int_equal(rc, full);
  if (rc != ORFEAS_PL_OK)
    assert_true(strlen(m2) > 10);
}

static void test_verify(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 96, 64, 1, 7);
  size_t len;
  for (int ch = 1; ch <= 4; ch++) {
    uint8_t *png = tpl_png(px, 96, 64, ch, &len);
    verify_agrees(png, len);
    for (size_t cut = 0; cut < len; cut += 1 + cut / 10)
      verify_agrees(png, cut);
    png[len - 20] ^= 0x5a;
    verify_agrees(png, len);
    free(png);
  }
  uint8_t *jpg = tpl_jpeg(px, 96, 64, &len);
  verify_agrees(jpg, len);
  for (size_t cut = 700; cut < len; cut += 1 + cut / 10)
    verify_agrees(jpg, cut);
  for (size_t k = len / 2; k < len / 2 + 24; k++)
    jpg[k] = k % 2 ? 0xff : 0xd9;
  verify_agrees(jpg, len);
  free(jpg);
  free(px);
  verify_agrees((const uint8_t *)"GIF89a....", 10);
  verify_agrees((const uint8_t *)"", 0);
  size_t hl;
  uint8_t *bomb = tpl_png_header_only(60000, 60000, &hl);
  verify_agrees(bomb, hl);
  free(bomb);
}

/* A 2048 x 2048 PNG (16 MiB of RGBA) is verified in a row's memory. */
static void test_verify_memory(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_DISKS, 2048, 2048, 1, 8);
  size_t len;
  uint8_t *png = tpl_png(px, 2048, 2048, 4, &len);
  free(px);
  long before = peak_rss_kb();
  assert_int_equal(orfeas_pl_image_verify(png, len, 0, 0, NULL, 0),
                   ORFEAS_PL_OK);
#ifndef __SANITIZE_ADDRESS__
  assert_true(peak_rss_kb() - before < 4096);
#else
  (void)before;
#endif
  free(png);
}

static void test_strerror(void **s) {
  (void)s;
  for (int c = ORFEAS_PL_OK; c <= ORFEAS_PL_EUNSUPPORTED; c++)
    assert_true(strlen(orfeas_pl_strerror((orfeas_pl_code)c)) > 3);
  assert_string_equal(orfeas_pl_strerror((orfeas_pl_code)999), "unknown error");
  assert_false(orfeas_pl_is_client_error(ORFEAS_PL_ENOMEM));
  assert_false(orfeas_pl_is_client_error(ORFEAS_PL_OK));
  assert_true(orfeas_pl_is_client_error(ORFEAS_PL_ESIZE));
  assert_true(orfeas_pl_is_client_error(ORFEAS_PL_EUNSUPPORTED));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      /* First, so the peak-RSS check sees a fresh process. */
      cmocka_unit_test(test_decompression_bomb),
      cmocka_unit_test(test_chunk_bomb),
      cmocka_unit_test(test_png_rgba),
      cmocka_unit_test(test_png_rgb),
      cmocka_unit_test(test_png_grey),
      cmocka_unit_test(test_jpeg),
      cmocka_unit_test(test_sizes_refused),
      cmocka_unit_test(test_pixel_limit),
      cmocka_unit_test(probe_reports_png_transparency),
      cmocka_unit_test(probe_refuses_what_decode_refuses),
      cmocka_unit_test(test_truncated_png),
      cmocka_unit_test(test_truncated_jpeg),
      cmocka_unit_test(test_corrupt),
      cmocka_unit_test(test_random_bytes),
      cmocka_unit_test(test_strerror),
      cmocka_unit_test(test_verify),
      cmocka_unit_test(test_verify_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
