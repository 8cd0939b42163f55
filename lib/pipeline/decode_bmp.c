/* decode_bmp.c: Windows BMP, parsed here (no library needed).
 *
 * What is decoded: the core (12-byte), info (40) and v2..v5 (52, 56, 108,
 * 124) headers; 1, 4 and 8 bit palettes; 16 and 32 bit pixels, plain or
 * with bit-field masks (an alpha mask is honoured); 24 bit; bottom-up or
 * top-down rows. What is refused as unsupported (415, naming the accepted
 * types): RLE4/RLE8, embedded JPEG/PNG, OS/2 2.x headers, other depths.
 *
 * Every read is bounds-checked against the buffer with 64-bit arithmetic
 * before it happens: the palette must lie inside the file, and so must the
 * whole pixel array (offset + stride x rows), which is checked once before
 * the rows are walked. The size rule is applied to the header's numbers
 * before anything is allocated.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static uint32_t le16(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

enum {
  BI_RGB = 0,
  BI_RLE8 = 1,
  BI_RLE4 = 2,
  BI_BITFIELDS = 3,
  BI_JPEG = 4,
  BI_PNG = 5,
  BI_ALPHABITFIELDS = 6
};

/* One channel's bit-field mask: where it sits and how wide it is. */
typedef struct {
  uint32_t mask;
  int shift, bits;
} chan;

typedef struct {
  uint32_t w, h; /* h = |height| */
  int top_down;
  int bpp;
  uint32_t compression;
  uint64_t data_off; /* pixel array */
  uint64_t stride;
  uint64_t pal_off;
  uint32_t pal_n; /* entries */
  int pal_entry;  /* 3 (core) or 4 bytes */
  chan c[4];      /* r, g, b, a (a.mask 0: opaque) */
} bmp_info;

static int set_chan(chan *c, uint32_t mask) {
  c->mask = mask;
  c->shift = 0;
  c->bits = 0;
  if (mask == 0)
    return 0;
  while (!((mask >> c->shift) & 1))
    c->shift++;
  uint32_t m = mask >> c->shift;
  while (c->bits < 32 && ((m >> c->bits) & 1))
    c->bits++;
  /* The mask's bits must be contiguous. */
  return (c->bits < 32 && (m >> c->bits) != 0) ? -1 : 0;
}

static uint8_t chan_value(const chan *c, uint32_t px) {
  if (c->bits == 0)
    return 0;
  uint64_t v = (px & c->mask) >> c->shift;
  uint64_t maxv = (c->bits >= 32) ? 0xffffffffu : ((1u << c->bits) - 1);
  return (uint8_t)((v * 255 + maxv / 2) / maxv);
}

static orfeas_pl_code unsupported(char *msg, size_t msg_len, const char *what) {
  return pl_fail(msg, msg_len, ORFEAS_PL_EUNSUPPORTED,
                 "%s BMP files are not supported; send %s (an uncompressed "
                 "BMP works)",
                 what, ORFEAS_PL_ACCEPTED_TYPES);
}

static orfeas_pl_code parse_header(const uint8_t *d, size_t n,
                                   uint32_t max_side, uint64_t max_pixels,
                                   bmp_info *bi, char *msg, size_t msg_len) {
  memset(bi, 0, sizeof *bi);
  if (n < 26)
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                   "the BMP data ends early (%zu bytes: no complete header)",
                   n);
  uint32_t hs = le32(d + 14);
  if (hs == 16 || hs == 64)
    return unsupported(msg, msg_len, "OS/2 2.x");
  if (hs != 12 && hs != 40 && hs != 52 && hs != 56 && hs != 108 && hs != 124)
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt BMP: unknown header size %u", hs);
  if ((uint64_t)14 + hs > n)
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                   "the BMP data ends early (inside its %u-byte header)", hs);
  const uint8_t *h = d + 14;
  int64_t width, height;
  uint32_t planes;
  if (hs == 12) {
    width = le16(h + 4);
    height = le16(h + 6);
    planes = le16(h + 8);
    bi->bpp = (int)le16(h + 10);
    bi->compression = BI_RGB;
    bi->pal_entry = 3;
  } else {
    width = (int32_t)le32(h + 4);
    height = (int32_t)le32(h + 8);
    planes = le16(h + 12);
    bi->bpp = (int)le16(h + 14);
    bi->compression = le32(h + 16);
    bi->pal_n = le32(h + 32);
    bi->pal_entry = 4;
  }
  if (planes != 1)
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt BMP: %u colour planes (1 expected)", planes);
  switch (bi->compression) {
  case BI_RGB:
  case BI_BITFIELDS:
  case BI_ALPHABITFIELDS:
    break;
  case BI_RLE8:
  case BI_RLE4:
    return unsupported(msg, msg_len, "RLE-compressed");
  case BI_JPEG:
  case BI_PNG:
    return unsupported(msg, msg_len, "JPEG- or PNG-compressed");
  default:
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt BMP: unknown compression %u", bi->compression);
  }
  int b = bi->bpp;
  if (b != 1 && b != 4 && b != 8 && b != 16 && b != 24 && b != 32) {
    if (b == 0 || b == 2 || b == 64)
      return unsupported(msg, msg_len, "This bit depth of");
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt BMP: %d bits per pixel", b);
  }
  if (bi->compression != BI_RGB && b != 16 && b != 32)
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt BMP: bit fields with %d bits per pixel", b);
  if (width <= 0 || height == 0)
    return pl_fail(msg, msg_len, ORFEAS_PL_ESIZE,
                   "image is %lldx%lld px; each side must be %u-%u px",
                   (long long)width, (long long)(height < 0 ? -height : height),
                   ORFEAS_PL_MIN_SIDE, ORFEAS_PL_MAX_SIDE);
  bi->top_down = height < 0;
  uint64_t aw = (uint64_t)width, ah = (uint64_t)(height < 0 ? -height : height);
  if (aw > 0xffffffffu || ah > 0xffffffffu)
    return pl_fail(msg, msg_len, ORFEAS_PL_ESIZE, "BMP side out of range");
  orfeas_pl_code rc = pl_check_dims((uint32_t)aw, (uint32_t)ah, max_side,
                                    max_pixels, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  bi->w = (uint32_t)aw;
  bi->h = (uint32_t)ah;

  /* Masks: in the header from v2 (52) on; after a 40-byte header when the
   * compression says bit fields. */
  uint64_t after = 14 + (uint64_t)hs;
  uint32_t m[4] = {0, 0, 0, 0};
  if (bi->compression == BI_BITFIELDS || bi->compression == BI_ALPHABITFIELDS) {
    const uint8_t *mp;
    int nm = bi->compression == BI_ALPHABITFIELDS ? 4 : 3;
    if (hs >= 52) {
      /* In the header: R, G, B in a v2 header (52 bytes), + A from 56 on,
       * whatever the compression says (a 52-byte header with alpha bit
       * fields read a fourth mask past its end: past the file's, for a
       * file that ends there). */
      mp = h + 40;
      nm = hs >= 56 ? 4 : 3;
    } else {
      if (after + 4u * (uint64_t)nm > n)
        return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                       "the BMP data ends early (inside its bit-field masks)");
      mp = d + after;
      after += 4u * (uint64_t)nm;
    }
    for (int i = 0; i < nm; i++)
      m[i] = le32(mp + 4 * i);
  } else if (b == 16) {
    m[0] = 0x7c00, m[1] = 0x03e0, m[2] = 0x001f;
  } else if (b == 32) {
    m[0] = 0xff0000, m[1] = 0xff00, m[2] = 0xff;
  }
  for (int i = 0; i < 4; i++)
    if (set_chan(&bi->c[i], m[i]) != 0)
      return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                     "corrupt BMP: a bit-field mask is not contiguous");

  if (b <= 8) {
    uint32_t full = 1u << b;
    if (bi->pal_n == 0 || bi->pal_n > full)
      bi->pal_n = full;
    bi->pal_off = after;
    if (bi->pal_off + (uint64_t)bi->pal_n * (uint64_t)bi->pal_entry > n)
      return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                     "the BMP data ends early (inside its palette)");
  }
  bi->data_off = le32(d + 10);
  bi->stride = ((aw * (uint64_t)b + 31) / 32) * 4;
  if (bi->data_off < 14 + (uint64_t)hs)
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt BMP: the pixel data starts inside the header");
  /* The whole pixel array must be in the file: every row read afterwards
   * is then inside the buffer. (w, h <= 4096 and bpp <= 32: no overflow.) */
  if (bi->data_off + bi->stride * bi->h > n)
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                   "the BMP data ends early (%zu bytes; its pixels need %llu)",
                   n, (unsigned long long)(bi->data_off + bi->stride * bi->h));
  return ORFEAS_PL_OK;
}

/* Pixel (x, y) of a 16 or 32 bit image, y counted from the top. */
static uint32_t px_at(const uint8_t *d, const bmp_info *bi, uint32_t x,
                      uint32_t y) {
  uint32_t sy = bi->top_down ? y : bi->h - 1 - y;
  const uint8_t *row = d + bi->data_off + bi->stride * sy;
  return bi->bpp == 16 ? le16(row + (size_t)x * 2) : le32(row + (size_t)x * 4);
}

/* The alpha rule: an alpha mask, and a pixel whose alpha is not 0 (writers
 * often leave the alpha bytes 0 meaning "unused"; browsers then draw the
 * image opaque, and so do we). */
static int alpha_used(const uint8_t *d, const bmp_info *bi) {
  if (bi->c[3].mask == 0)
    return 0;
  for (uint32_t y = 0; y < bi->h; y++)
    for (uint32_t x = 0; x < bi->w; x++)
      if (chan_value(&bi->c[3], px_at(d, bi, x, y)) != 0)
        return 1;
  return 0;
}

orfeas_pl_code pl_bmp_probe(const uint8_t *d, size_t n, uint32_t max_side,
                            uint64_t max_pixels, orfeas_pl_image_info *info,
                            char *msg, size_t msg_len) {
  bmp_info bi;
  orfeas_pl_code rc =
      parse_header(d, n, max_side, max_pixels, &bi, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  info->width = bi.w;
  info->height = bi.h;
  info->has_alpha = alpha_used(d, &bi);
  return ORFEAS_PL_OK;
}

orfeas_pl_code pl_bmp_decode(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, orfeas_pl_image *img,
                             char *msg, size_t msg_len) {
  bmp_info bi;
  orfeas_pl_code rc =
      parse_header(d, n, max_side, max_pixels, &bi, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  size_t size = (size_t)bi.w * bi.h * 4;
  /* Owned by img once the decode succeeds. */
  uint8_t *rgba = malloc(size);
  if (rgba == NULL)
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory (%zu bytes)",
                   size);
  const uint8_t *pal = d + bi.pal_off;
  int alpha = alpha_used(d, &bi); /* else every pixel is opaque */
  for (uint32_t y = 0; y < bi.h; y++) {
    uint32_t sy = bi.top_down ? y : bi.h - 1 - y;
    const uint8_t *row = d + bi.data_off + bi.stride * sy;
    uint8_t *out = rgba + (size_t)y * bi.w * 4;
    for (uint32_t x = 0; x < bi.w; x++, out += 4) {
      out[3] = 255;
      if (bi.bpp <= 8) {
        uint32_t bit = x * (uint32_t)bi.bpp;
        uint32_t idx =
            (row[bit / 8] >> (8 - bi.bpp - bit % 8)) & ((1u << bi.bpp) - 1);
        if (idx < bi.pal_n) {
          const uint8_t *e = pal + (size_t)idx * (size_t)bi.pal_entry;
          out[0] = e[2], out[1] = e[1], out[2] = e[0];
        } else {
          out[0] = out[1] = out[2] = 0;
        }
      } else if (bi.bpp == 24) {
        const uint8_t *p = row + (size_t)x * 3;
        out[0] = p[2], out[1] = p[1], out[2] = p[0];
      } else {
        uint32_t px = px_at(d, &bi, x, y);
        out[0] = chan_value(&bi.c[0], px);
        out[1] = chan_value(&bi.c[1], px);
        out[2] = chan_value(&bi.c[2], px);
        if (alpha)
          out[3] = chan_value(&bi.c[3], px);
      }
    }
  }
  img->width = bi.w;
  img->height = bi.h;
  img->has_alpha = alpha;
  img->rgba = rgba;
  return ORFEAS_PL_OK;
}
