/* test_pl_formats.c: image_loading for WebP, GIF and BMP (and the types we
 * only recognise). Valid files in each variant decode to the right pixels
 * and the right alpha; sizes past the rule are refused before any pixel
 * memory is spent; every prefix of a valid file, random bytes behind each
 * signature and hand-broken headers give a clean client error with a
 * message and nothing allocated. Also run under ASan/UBSan
 * (asan.pl_formats), which is where a bounds slip would show. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* After the four above, which it needs. */
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

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* A refusal: the code, a message, a zeroed image. */
static void expect_refusal(const uint8_t *d, size_t n, orfeas_pl_code want) {
  orfeas_pl_image img;
  memset(&img, 0xAB, sizeof img);
  char msg[256] = "";
  orfeas_pl_code rc = decode(d, n, &img, msg, sizeof msg);
  if (rc != want)
    fail_msg("got %s (%s), wanted %s", orfeas_pl_strerror(rc), msg,
             orfeas_pl_strerror(want));
  assert_true(orfeas_pl_is_client_error(rc));
  assert_true(strlen(msg) > 10);
  assert_null(img.rgba);
  assert_int_equal(img.width, 0);
}

/* Every prefix of a valid file is refused cleanly. */
static void refuse_prefixes(const uint8_t *d, size_t len) {
  for (size_t cut = 0; cut < len; cut += 1 + cut / 16) {
    orfeas_pl_image img;
    char msg[256] = "";
    orfeas_pl_code rc = decode(d, cut, &img, msg, sizeof msg);
    if (rc == ORFEAS_PL_OK)
      fail_msg("a %zu-byte prefix of %zu bytes decoded", cut, len);
    assert_true(orfeas_pl_is_client_error(rc));
    assert_true(msg[0] != '\0');
    assert_null(img.rgba);
  }
}

/* The probe reads the type and size and, without decoding the pixels,
 * says has_alpha exactly as the decoder does. */
static void probe_agrees(const uint8_t *d, size_t n, orfeas_pl_image_type t,
                         uint32_t w, uint32_t h) {
  orfeas_pl_image_info info;
  assert_int_equal(orfeas_pl_image_probe(d, n, 0, 0, &info, NULL, 0),
                   ORFEAS_PL_OK);
  assert_int_equal(info.type, t);
  assert_int_equal(info.width, w);
  assert_int_equal(info.height, h);
  orfeas_pl_image img;
  assert_int_equal(decode(d, n, &img, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(info.has_alpha, img.has_alpha);
  orfeas_pl_image_free(&img);
}

/* ---- WebP ------------------------------------------------------------- */

static void test_webp_lossless(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 64, 48, 1, 1);
  size_t len;
  uint8_t *w = tpl_webp(px, 64, 48, 1, &len);
  assert_non_null(w);
  assert_int_equal(orfeas_pl_image_sniff(w, len), ORFEAS_PL_IMAGE_WEBP);
  assert_string_equal(orfeas_pl_image_type_name(ORFEAS_PL_IMAGE_WEBP), "WEBP");
  assert_string_equal(orfeas_pl_image_type_ext(ORFEAS_PL_IMAGE_WEBP), "webp");
  probe_agrees(w, len, ORFEAS_PL_IMAGE_WEBP, 64, 48);
  orfeas_pl_image img;
  assert_int_equal(decode(w, len, &img, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(img.has_alpha, 1);
  /* Lossless: every opaque pixel is exact, and alpha is exact everywhere
   * (libwebp may change the colour under alpha 0). */
  for (size_t i = 0; i < (size_t)64 * 48; i++) {
    assert_int_equal(img.rgba[i * 4 + 3], px[i * 4 + 3]);
    if (px[i * 4 + 3] == 255)
      assert_memory_equal(img.rgba + i * 4, px + i * 4, 3);
  }
  orfeas_pl_image_free(&img);
  refuse_prefixes(w, len);
  free(w);
  free(px);
}

static void test_webp_lossy(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_DISKS, 80, 64, 0, 2);
  size_t len;
  uint8_t *w = tpl_webp(px, 80, 64, 0, &len);
  assert_non_null(w);
  orfeas_pl_image img;
  assert_int_equal(decode(w, len, &img, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(img.width, 80);
  assert_int_equal(img.has_alpha, 0);
  assert_in_range(img.rgba[0], 225, 245); /* the flat background, lossy */
  assert_int_equal(img.rgba[3], 255);
  orfeas_pl_image_free(&img);
  refuse_prefixes(w, len);
  free(w);
  free(px);
}

/* An animation decodes to its first frame (odd frames are inverted). */
static void test_webp_animated(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 48, 40, 0, 3);
  size_t len;
  uint8_t *w = tpl_webp_anim(px, 48, 40, 3, &len);
  assert_non_null(w);
  probe_agrees(w, len, ORFEAS_PL_IMAGE_WEBP, 48, 40);
  orfeas_pl_image img;
  assert_int_equal(decode(w, len, &img, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(img.width, 48);
  assert_int_equal(img.height, 40);
  for (size_t i = 0; i < (size_t)48 * 40; i += 7)
    assert_memory_equal(img.rgba + i * 4, px + i * 4, 4);
  orfeas_pl_image_free(&img);
  refuse_prefixes(w, len);
  free(w);
  free(px);
}

/* VP8L's header holds (width-1) and (height-1) in 14 bits each. */
static void set_vp8l_size(uint8_t *w, uint32_t width, uint32_t height) {
  assert_memory_equal(w + 12, "VP8L", 4);
  uint32_t b = (uint32_t)w[21] | (uint32_t)w[22] << 8 | (uint32_t)w[23] << 16 |
               (uint32_t)w[24] << 24;
  b = (b & ~0x0fffffffu) | ((width - 1) & 0x3fff) |
      ((height - 1) & 0x3fff) << 14;
  for (int i = 0; i < 4; i++)
    w[21 + i] = (uint8_t)(b >> (8 * i));
}

static void test_webp_sizes(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_DISKS, 64, 64, 0, 4);
  size_t len;
  uint8_t *w = tpl_webp(px, 64, 64, 1, &len);
  long before = peak_rss_kb();
  set_vp8l_size(w, 16384, 16384); /* 1 GiB of RGBA */
  expect_refusal(w, len, ORFEAS_PL_ESIZE);
  set_vp8l_size(w, 16384, 1);
  expect_refusal(w, len, ORFEAS_PL_ESIZE);
  set_vp8l_size(w, 31, 64);
  expect_refusal(w, len, ORFEAS_PL_ESIZE);
#ifndef __SANITIZE_ADDRESS__
  assert_true(peak_rss_kb() - before < 2048);
#else
  (void)before;
#endif
  /* A size the rule allows but the data does not hold: corrupt or cut. */
  set_vp8l_size(w, 4000, 4000);
  orfeas_pl_image img;
  char msg[200] = "";
  orfeas_pl_code rc = decode(w, len, &img, msg, sizeof msg);
  assert_true(rc == ORFEAS_PL_ECORRUPT || rc == ORFEAS_PL_ETRUNCATED);
  assert_null(img.rgba);
  free(w);
  free(px);
}

/* ---- GIF -------------------------------------------------------------- */

static void check_gif_pixels(const orfeas_pl_image *img, const uint8_t *px,
                             uint32_t w, uint32_t h) {
  for (size_t i = 0; i < (size_t)w * h; i++) {
    const uint8_t *o = img->rgba + i * 4;
    if (px[i * 4 + 3] < 128) {
      assert_int_equal(o[3], 0);
    } else {
      uint8_t c[3];
      tpl_cube_colour(tpl_cube_index(px + i * 4), c);
      assert_memory_equal(o, c, 3);
      assert_int_equal(o[3], 255);
    }
  }
}

static void test_gif(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 70, 50, 1, 5);
  for (int interlace = 0; interlace <= 1; interlace++) {
    size_t len;
    uint8_t *g = tpl_gif(px, 70, 50, 1, interlace, &len);
    assert_non_null(g);
    assert_int_equal(orfeas_pl_image_sniff(g, len), ORFEAS_PL_IMAGE_GIF);
    probe_agrees(g, len, ORFEAS_PL_IMAGE_GIF, 70, 50);
    orfeas_pl_image img;
    assert_int_equal(decode(g, len, &img, NULL, 0), ORFEAS_PL_OK);
    assert_int_equal(img.has_alpha, 1);
    check_gif_pixels(&img, px, 70, 50);
    orfeas_pl_image_free(&img);
    refuse_prefixes(g, len);
    free(g);
  }
  free(px);
}

/* 200 frames: only the first is decoded, so the peak barely moves. */
static void test_gif_animation_first_frame(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_DISKS, 256, 256, 0, 6);
  size_t len;
  uint8_t *g = tpl_gif(px, 256, 256, 200, 0, &len);
  assert_non_null(g);
  probe_agrees(g, len, ORFEAS_PL_IMAGE_GIF, 256, 256);
  orfeas_pl_image img;
  assert_int_equal(decode(g, len, &img, NULL, 0), ORFEAS_PL_OK);
  orfeas_pl_image_free(&img);
  long before = peak_rss_kb();
  assert_int_equal(decode(g, len, &img, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(img.has_alpha, 0);
  check_gif_pixels(&img, px, 256, 256);
  orfeas_pl_image_free(&img);
#ifndef __SANITIZE_ADDRESS__
  /* 200 x 64 KiB of indexes if every frame were kept. */
  assert_true(peak_rss_kb() - before < 4096);
#else
  (void)before;
#endif
  free(g);
  free(px);
}

static void put_le16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}

static void test_gif_hostile(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_DISKS, 40, 40, 0, 7);
  size_t len;
  uint8_t *g = tpl_gif(px, 40, 40, 1, 0, &len);
  uint8_t *c = malloc(len);
  /* Screen sizes past the rule, and 0. */
  static const uint32_t sizes[][2] = {
      {65535, 65535}, {65535, 1}, {0, 40}, {31, 40}};
  for (size_t i = 0; i < 4; i++) {
    memcpy(c, g, len);
    put_le16(c + 6, sizes[i][0]);
    put_le16(c + 8, sizes[i][1]);
    expect_refusal(c, len, ORFEAS_PL_ESIZE);
  }
  /* A frame larger than the screen: the screen says 40x39. */
  memcpy(c, g, len);
  put_le16(c + 8, 39);
  expect_refusal(c, len, ORFEAS_PL_ECORRUPT);
  /* No global colour map and no local one: clear the flag; the 768 map
   * bytes then read as garbage records. */
  memcpy(c, g, len);
  c[10] &= 0x7f;
  orfeas_pl_image img;
  char msg[200] = "";
  orfeas_pl_code rc = decode(c, len, &img, msg, sizeof msg);
  assert_int_not_equal(rc, ORFEAS_PL_OK);
  assert_true(orfeas_pl_is_client_error(rc));
  assert_null(img.rgba);
  /* A file with a screen and no image. */
  static const uint8_t empty[] = "GIF89a\x28\x00\x28\x00\x00\x00\x00\x3b";
  expect_refusal(empty, sizeof empty - 1, ORFEAS_PL_ECORRUPT);
  /* Random bytes behind the signature. */
  uint32_t x = 99;
  for (int round = 0; round < 200; round++) {
    memcpy(c, g, len);
    size_t from = 6 + (size_t)round % 40;
    for (size_t i = from; i < len; i += 1 + round % 5)
      c[i] = (uint8_t)test_rand(&x);
    rc = decode(c, len, &img, msg, sizeof msg);
    if (rc == ORFEAS_PL_OK)
      orfeas_pl_image_free(&img);
    else
      assert_true(orfeas_pl_is_client_error(rc) && msg[0] != '\0' &&
                  img.rgba == NULL);
  }
  free(c);
  free(g);
  free(px);
}

/* Appends code c (3 bits, LSB first) to the bit buffer. */
static void put_bits3(uint8_t *buf, size_t *nbits, unsigned c) {
  for (int i = 0; i < 3; i++, (*nbits)++)
    if ((c >> i) & 1)
      buf[*nbits / 8] |= (uint8_t)(1u << (*nbits % 8));
}

/* Palette indexes past the colour map: a 2-colour (white) map, and a
 * 32x32 block of index 3 in a 64x64 frame (LZW code size 2, a clear code
 * every two pixels so codes stay 3 bits). Such pixels are painted opaque
 * black, not left transparent: has_alpha (0, probe and decode alike) must
 * hold, or the mask took them for black foreground behind a "no alpha"
 * flag. */
static void test_gif_index_past_map(void **s) {
  (void)s;
  enum { W = 64 };
  uint8_t lzw[W * W * 2] = {0};
  size_t nb = 0;
  put_bits3(lzw, &nb, 4);
  for (int i = 0; i < W * W; i++) {
    int x = i % W, y = i / W;
    put_bits3(lzw, &nb, x >= 16 && x < 48 && y >= 16 && y < 48 ? 3 : 0);
    if (i % 2 == 1)
      put_bits3(lzw, &nb, 4);
  }
  put_bits3(lzw, &nb, 5);
  size_t nbytes = (nb + 7) / 8;
  uint8_t *g = malloc(64 + nbytes + nbytes / 255 + 8);
  size_t n = 0;
  static const uint8_t head[] = {
      'G',  'I',  'F',  '8',  '9', 'a', W, 0, W, 0, 0x80, 0, 0, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, ',', 0,   0, 0, 0, W, 0,    W, 0, 0,    2};
  memcpy(g, head, sizeof head);
  n = sizeof head;
  for (size_t i = 0; i < nbytes; i += 255) {
    size_t k = nbytes - i < 255 ? nbytes - i : 255;
    g[n++] = (uint8_t)k;
    memcpy(g + n, lzw + i, k);
    n += k;
  }
  g[n++] = 0;
  g[n++] = ';';
  probe_agrees(g, n, ORFEAS_PL_IMAGE_GIF, W, W);
  orfeas_pl_image img;
  assert_int_equal(decode(g, n, &img, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(img.has_alpha, 0);
  const uint8_t *in = img.rgba + ((size_t)20 * W + 20) * 4;
  const uint8_t *outside = img.rgba;
  assert_int_equal(in[0], 0);
  assert_int_equal(in[3], 255);
  assert_int_equal(outside[0], 255);
  assert_int_equal(outside[3], 255);
  orfeas_pl_image_free(&img);
  free(g);
}

/* ---- BMP -------------------------------------------------------------- */

static void test_bmp(void **s) {
  (void)s;
  uint8_t *px =
      tpl_draw(TPL_STAR_HOLE, 45, 37, 1, 8); /* odd width: row padding */
  static const int depths[] = {8, 24, 32};
  for (size_t k = 0; k < 3; k++)
    for (int td = 0; td <= 1; td++) {
      size_t len;
      uint8_t *b = tpl_bmp(px, 45, 37, depths[k], td, &len);
      assert_int_equal(orfeas_pl_image_sniff(b, len), ORFEAS_PL_IMAGE_BMP);
      probe_agrees(b, len, ORFEAS_PL_IMAGE_BMP, 45, 37);
      orfeas_pl_image img;
      assert_int_equal(decode(b, len, &img, NULL, 0), ORFEAS_PL_OK);
      assert_int_equal(img.has_alpha, depths[k] == 32);
      for (size_t i = 0; i < (size_t)45 * 37; i++) {
        const uint8_t *o = img.rgba + i * 4, *p = px + i * 4;
        if (depths[k] == 8) {
          uint8_t c[3];
          tpl_cube_colour(tpl_cube_index(p), c);
          assert_memory_equal(o, c, 3);
          assert_int_equal(o[3], 255);
        } else {
          assert_memory_equal(o, p, 3);
          assert_int_equal(o[3], depths[k] == 32 ? p[3] : 255);
        }
      }
      orfeas_pl_image_free(&img);
      refuse_prefixes(b, len);
      free(b);
    }
  free(px);
}

static void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* Header fields set one at a time to what an attacker would send. */
static void test_bmp_hostile(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_DISKS, 40, 40, 0, 9);
  size_t len;
  uint8_t *b = tpl_bmp(px, 40, 40, 8, 0, &len); /* 40-byte header, palette */
  uint8_t *c = malloc(len);
  struct {
    size_t off;
    int bytes;
    uint32_t v;
    orfeas_pl_code want;
  } cases[] = {
      {18, 4, 100000, ORFEAS_PL_ESIZE},      /* width */
      {22, 4, 60000, ORFEAS_PL_ESIZE},       /* height */
      {22, 4, 0x80000000u, ORFEAS_PL_ESIZE}, /* height INT32_MIN */
      {18, 4, 0xffffffffu, ORFEAS_PL_ESIZE}, /* width -1 */
      {22, 4, 0, ORFEAS_PL_ESIZE},           /* height 0 */
      {26, 2, 2, ORFEAS_PL_ECORRUPT},        /* planes */
      {28, 2, 7, ORFEAS_PL_ECORRUPT},        /* bits per pixel */
      {28, 2, 2, ORFEAS_PL_EUNSUPPORTED},    /* 2 bpp (Windows CE) */
      {30, 4, 1, ORFEAS_PL_EUNSUPPORTED},    /* RLE8 */
      {30, 4, 2, ORFEAS_PL_EUNSUPPORTED},    /* RLE4 */
      {30, 4, 4, ORFEAS_PL_EUNSUPPORTED},    /* JPEG inside */
      {30, 4, 99, ORFEAS_PL_ECORRUPT},       /* unknown compression */
      {30, 4, 3, ORFEAS_PL_ECORRUPT},        /* bit fields at 8 bpp */
      {10, 4, 0xfffffff0u,
       ORFEAS_PL_ETRUNCATED},              /* pixel data far past the end */
      {10, 4, 20, ORFEAS_PL_ECORRUPT},     /* pixel data inside the header */
      {14, 4, 64, ORFEAS_PL_EUNSUPPORTED}, /* OS/2 2.x header */
      {14, 4, 0x7fffffffu,
       ORFEAS_PL_EFORMAT},                /* header size: not a BMP we know */
      {46, 4, 0xffffffffu, ORFEAS_PL_OK}, /* colours used: clamped to 256 */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    memcpy(c, b, len);
    if (cases[i].bytes == 4)
      put_le32(c + cases[i].off, cases[i].v);
    else
      put_le16(c + cases[i].off, cases[i].v);
    if (cases[i].want == ORFEAS_PL_OK) {
      orfeas_pl_image img;
      assert_int_equal(decode(c, len, &img, NULL, 0), ORFEAS_PL_OK);
      orfeas_pl_image_free(&img);
    } else {
      expect_refusal(c, len, cases[i].want);
    }
  }
  /* The palette cut by the end of the file. */
  expect_refusal(b, 14 + 40 + 100, ORFEAS_PL_ETRUNCATED);
  free(b);
  /* A 52-byte (v2) header with alpha bit fields (6), the file ending with
   * the header: its three masks are read, not a fourth past the end (an
   * exact allocation, so ASan sees any byte read past it). */
  uint8_t *v2 = malloc(66);
  memset(v2, 0, 66);
  v2[0] = 'B', v2[1] = 'M';
  put_le32(v2 + 2, 66);
  put_le32(v2 + 10, 66);
  put_le32(v2 + 14, 52);
  put_le32(v2 + 18, 32);
  put_le32(v2 + 22, 32);
  put_le16(v2 + 26, 1);
  put_le16(v2 + 28, 32);
  put_le32(v2 + 30, 6);
  put_le32(v2 + 54, 0xff0000);
  put_le32(v2 + 58, 0xff00);
  put_le32(v2 + 62, 0xff);
  expect_refusal(v2, 66, ORFEAS_PL_ETRUNCATED);
  free(v2);
  /* 16-bit bit fields that are not contiguous (32 bpp file, masks in the
   * v5 header at 54..69). */
  b = tpl_bmp(px, 40, 40, 32, 0, &len);
  put_le32(b + 54, 0x00f0f000);
  expect_refusal(b, len, ORFEAS_PL_ECORRUPT);
  /* An alpha mask whose alpha is 0 everywhere reads as opaque. */
  put_le32(b + 54, 0x00ff0000);
  for (size_t i = 0; i < (size_t)40 * 40; i++)
    b[len - 1 - 4 * i] = 0;
  probe_agrees(b, len, ORFEAS_PL_IMAGE_BMP, 40, 40);
  orfeas_pl_image img;
  assert_int_equal(decode(b, len, &img, NULL, 0), ORFEAS_PL_OK);
  assert_int_equal(img.has_alpha, 0);
  assert_int_equal(img.rgba[3], 255);
  orfeas_pl_image_free(&img);
  free(b);
  free(c);
  free(px);
}

/* Types we recognise and do not decode: a 415-style refusal naming what is
 * accepted; bytes of no type: EFORMAT. */
static void test_unsupported_types(void **s) {
  (void)s;
  static const uint8_t tiff_le[] = "II*\0\x08\0\0\0garbagegarbage";
  static const uint8_t tiff_be[] = "MM\0*\0\0\0\x08garbagegarbage";
  static const uint8_t heic[] = "\0\0\0\x18"
                                "ftypheic\0\0\0\0mif1heic";
  static const uint8_t avif[] = "\0\0\0\x1c"
                                "ftypavif\0\0\0\0avifmif1";
  const uint8_t *files[] = {tiff_le, tiff_be, heic, avif};
  size_t lens[] = {sizeof tiff_le - 1, sizeof tiff_be - 1, sizeof heic - 1,
                   sizeof avif - 1};
  for (size_t i = 0; i < 4; i++) {
    char msg[256];
    orfeas_pl_image img;
    assert_int_equal(decode(files[i], lens[i], &img, msg, sizeof msg),
                     ORFEAS_PL_EUNSUPPORTED);
    assert_non_null(strstr(msg, ORFEAS_PL_ACCEPTED_TYPES));
    orfeas_pl_image_info info;
    assert_int_equal(
        orfeas_pl_image_probe(files[i], lens[i], 0, 0, &info, NULL, 0),
        ORFEAS_PL_EUNSUPPORTED);
    assert_int_equal(info.type, ORFEAS_PL_IMAGE_UNKNOWN);
  }
  expect_refusal((const uint8_t *)"RIFF\0\0\0\0WAVEfmt ", 16,
                 ORFEAS_PL_EFORMAT);
  expect_refusal((const uint8_t *)"RIFF\0\0", 6, ORFEAS_PL_ETRUNCATED);
  expect_refusal((const uint8_t *)"BM\0\0", 4, ORFEAS_PL_ETRUNCATED);
  assert_int_equal(
      orfeas_pl_image_sniff((const uint8_t *)"BM hello there, friend", 22),
      ORFEAS_PL_IMAGE_UNKNOWN);
  assert_string_equal(orfeas_pl_image_type_mime(ORFEAS_PL_IMAGE_GIF),
                      "image/gif");
  assert_string_equal(orfeas_pl_image_type_name(ORFEAS_PL_IMAGE_UNKNOWN),
                      "unknown");
  assert_null(orfeas_pl_image_type_ext(ORFEAS_PL_IMAGE_UNKNOWN));
  assert_string_equal(orfeas_pl_image_type_ext(ORFEAS_PL_IMAGE_JPEG), "jpg");
}

/* Random bytes behind each signature reach each decoder. */
static void test_random_behind_signatures(void **s) {
  (void)s;
  static const struct {
    const char *sig;
    size_t n;
  } sigs[] = {{"RIFF\x40\0\0\0WEBPVP8 ", 16},
              {"RIFF\x40\0\0\0WEBPVP8L", 16},
              {"RIFF\x40\0\0\0WEBPVP8X", 16},
              {"GIF89a", 6},
              {"GIF87a", 6},
              {"BM\0\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0", 18}};
  uint8_t buf[2048];
  uint32_t x = 4242;
  for (int round = 0; round < 600; round++) {
    size_t n = 18 + (size_t)round * 7 % (sizeof buf - 18);
    for (size_t i = 0; i < n; i++)
      buf[i] = (uint8_t)test_rand(&x);
    size_t k = (size_t)round % (sizeof sigs / sizeof sigs[0]);
    memcpy(buf, sigs[k].sig, sigs[k].n);
    orfeas_pl_image img;
    char msg[256] = "";
    orfeas_pl_code rc = decode(buf, n, &img, msg, sizeof msg);
    if (rc == ORFEAS_PL_OK) {
      orfeas_pl_image_free(&img);
      continue;
    }
    assert_true(orfeas_pl_is_client_error(rc));
    assert_true(msg[0] != '\0');
    assert_null(img.rgba);
  }
}

/* The whole pipeline takes each new type. */
static void test_pipeline_runs(void **s) {
  (void)s;
  uint8_t *px = tpl_draw(TPL_STAR_HOLE, 64, 64, 1, 10);
  size_t lens[3];
  uint8_t *files[3] = {tpl_webp(px, 64, 64, 1, &lens[0]),
                       tpl_gif(px, 64, 64, 1, 0, &lens[1]),
                       tpl_bmp(px, 64, 64, 32, 0, &lens[2])};
  for (int i = 0; i < 3; i++) {
    orfeas_pl_options o;
    orfeas_pl_options_init(&o);
    o.quality = 1;
    o.format = ORFEAS_PL_GLB;
    orfeas_pl_result r;
    char msg[256] = "";
    assert_int_equal(orfeas_pl_run(files[i], lens[i], &o, &r, msg, sizeof msg),
                     ORFEAS_PL_OK);
    assert_true(r.quality.closed);
    assert_true(r.file.size > 0);
    orfeas_pl_result_free(&r);
    free(files[i]);
  }
  free(px);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_webp_sizes),
      cmocka_unit_test(test_gif_animation_first_frame),
      cmocka_unit_test(test_webp_lossless),
      cmocka_unit_test(test_webp_lossy),
      cmocka_unit_test(test_webp_animated),
      cmocka_unit_test(test_gif),
      cmocka_unit_test(test_gif_hostile),
      cmocka_unit_test(test_gif_index_past_map),
      cmocka_unit_test(test_bmp),
      cmocka_unit_test(test_bmp_hostile),
      cmocka_unit_test(test_unsupported_types),
      cmocka_unit_test(test_random_behind_signatures),
      cmocka_unit_test(test_pipeline_runs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
