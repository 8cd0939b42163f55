/* decode_png.c: PNG through libspng, hardened for untrusted uploads.
 *
 * Why libspng: it takes image and chunk limits before it reads a byte, and
 * reports errors as codes rather than libpng's longjmp. The order matters:
 * limits are set, then the header is read and checked against our rule, and
 * only then is the RGBA buffer allocated. Ancillary chunks are capped too
 * (a zTXt/iCCP bomb would otherwise inflate into the chunk cache).
 */
#include <spng.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Per-chunk and total ancillary-chunk memory. 1 MiB covers any real iCCP or
 * text chunk; the cache cap bounds what a file full of chunks can cost. */
#define PNG_CHUNK_LIMIT (1u << 20)
#define PNG_CACHE_LIMIT (8u << 20)

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

/* d/n: the file, so a size refusal can quote the header's own numbers. */
static orfeas_pl_code map_spng(int err, const uint8_t *d, size_t n, char *msg,
                               size_t msg_len) {
  switch (err) {
  case SPNG_IO_EOF: /* the buffer ran out mid-chunk */
  case SPNG_EOF:
  case SPNG_EIDAT_TOO_SHORT:
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                   "the PNG data ends early (%s)", spng_strerror(err));
  case SPNG_EUSER_WIDTH:
  case SPNG_EUSER_HEIGHT:
  case SPNG_EWIDTH:
  case SPNG_EHEIGHT:
    /* spng stops at its own limit before telling us the size; IHDR is
     * always the first chunk, at a fixed offset. */
    if (n >= 24 && memcmp(d + 12, "IHDR", 4) == 0)
      return pl_fail(msg, msg_len, ORFEAS_PL_ESIZE,
                     "image is %ux%u px; each side must be %u-%u px",
                     be32(d + 16), be32(d + 20), ORFEAS_PL_MIN_SIDE,
                     ORFEAS_PL_MAX_SIDE);
    return pl_fail(msg, msg_len, ORFEAS_PL_ESIZE,
                   "PNG side out of range: each side must be %u-%u px (%s)",
                   ORFEAS_PL_MIN_SIDE, ORFEAS_PL_MAX_SIDE, spng_strerror(err));
  case SPNG_EMEM:
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory");
  default:
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT, "corrupt PNG: %s",
                   spng_strerror(err));
  }
}

/* Opens a context over the bytes with every limit set and reads IHDR. */
static orfeas_pl_code open_png(const uint8_t *d, size_t n, uint32_t max_side,
                               uint64_t max_pixels, spng_ctx **out,
                               struct spng_ihdr *ihdr, char *msg,
                               size_t msg_len) {
  *out = NULL;
  spng_ctx *ctx = spng_ctx_new(0);
  if (ctx == NULL)
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory");
  int err = spng_set_image_limits(ctx, max_side, max_side);
  if (!err)
    err = spng_set_chunk_limits(ctx, PNG_CHUNK_LIMIT, PNG_CACHE_LIMIT);
  if (!err)
    err = spng_set_png_buffer(ctx, d, n);
  if (!err)
    err = spng_get_ihdr(ctx, ihdr);
  if (err) {
    spng_ctx_free(ctx);
    return map_spng(err, d, n, msg, msg_len);
  }
  orfeas_pl_code rc = pl_check_dims(ihdr->width, ihdr->height, max_side,
                                    max_pixels, msg, msg_len);
  if (rc != ORFEAS_PL_OK) {
    spng_ctx_free(ctx);
    return rc;
  }
  *out = ctx;
  return ORFEAS_PL_OK;
}

/* Transparency: an alpha channel (colour types 4 and 6), or a tRNS chunk
 * for the others. Reading tRNS makes spng read the chunks before the image
 * data (within the chunk limits); one that cannot be read counts as none. */
static int png_has_alpha(spng_ctx *ctx, const struct spng_ihdr *ihdr) {
  if (ihdr->color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ||
      ihdr->color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA)
    return 1;
  struct spng_trns trns;
  return spng_get_trns(ctx, &trns) == 0;
}

orfeas_pl_code pl_png_probe(const uint8_t *d, size_t n, uint32_t max_side,
                            uint64_t max_pixels, orfeas_pl_image_info *info,
                            char *msg, size_t msg_len) {
  spng_ctx *ctx;
  struct spng_ihdr ihdr;
  orfeas_pl_code rc =
      open_png(d, n, max_side, max_pixels, &ctx, &ihdr, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  info->type = ORFEAS_PL_IMAGE_PNG;
  info->width = ihdr.width;
  info->height = ihdr.height;
  info->has_alpha = png_has_alpha(ctx, &ihdr);
  spng_ctx_free(ctx);
  return ORFEAS_PL_OK;
}

orfeas_pl_code pl_png_decode(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, orfeas_pl_image *img,
                             char *msg, size_t msg_len) {
  spng_ctx *ctx;
  struct spng_ihdr ihdr;
  orfeas_pl_code rc =
      open_png(d, n, max_side, max_pixels, &ctx, &ihdr, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  size_t size;
  int err = spng_decoded_image_size(ctx, SPNG_FMT_RGBA8, &size);
  if (err) {
    spng_ctx_free(ctx);
    return map_spng(err, d, n, msg, msg_len);
  }
  /* Owned by img from here; orfeas_pl_image_free() releases it. */
  uint8_t *rgba = malloc(size);
  if (rgba == NULL) {
    spng_ctx_free(ctx);
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory (%zu bytes)",
                   size);
  }
  err = spng_decode_image(ctx, rgba, size, SPNG_FMT_RGBA8, SPNG_DECODE_TRNS);
  if (err) {
    free(rgba);
    spng_ctx_free(ctx);
    return map_spng(err, d, n, msg, msg_len);
  }
  img->width = ihdr.width;
  img->height = ihdr.height;
  img->has_alpha = png_has_alpha(ctx, &ihdr);
  img->rgba = rgba;
  spng_ctx_free(ctx);
  return ORFEAS_PL_OK;
}

orfeas_pl_code pl_png_verify(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, char *msg, size_t msg_len) {
  spng_ctx *ctx;
  struct spng_ihdr ihdr;
  orfeas_pl_code rc =
      open_png(d, n, max_side, max_pixels, &ctx, &ihdr, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  /* Row by row in the file's own format (no conversion): one row of
   * memory, every byte of the image data inflated and checked. */
  size_t size = 0;
  int err = spng_decoded_image_size(ctx, SPNG_FMT_PNG, &size);
  if (!err)
    err =
        spng_decode_image(ctx, NULL, 0, SPNG_FMT_PNG, SPNG_DECODE_PROGRESSIVE);
  size_t row_len = ihdr.height ? size / ihdr.height : 0;
  uint8_t *row = err ? NULL : malloc(row_len ? row_len : 1);
  if (!err && row == NULL) {
    spng_ctx_free(ctx);
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory");
  }
  while (!err)
    err = spng_decode_row(ctx, row, row_len);
  free(row);
  spng_ctx_free(ctx);
  return err == SPNG_EOI ? ORFEAS_PL_OK : map_spng(err, d, n, msg, msg_len);
}
