/* pl_images.h: test images for the pipeline, drawn and encoded in memory.
 *
 * No image files are committed: every test draws what it needs (shapes with
 * holes, thin features, noise, several parts) and encodes it with libspng or
 * TurboJPEG. Shared by the unit tests, the output-validation tool and the
 * benchmark. Not thread-safe only in the sense that each call owns what it
 * returns: every function is re-entrant.
 */
#ifndef ORFEAS_PL_IMAGES_H
#define ORFEAS_PL_IMAGES_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  TPL_STAR_HOLE = 0, /* a 5-point star with a square hole: genus 1 */
  TPL_THIN,          /* a ring and 1-3 px strokes: thin features */
  TPL_NOISE,         /* a blob under heavy salt-and-pepper noise */
  TPL_DISKS,         /* three separate disks: three parts */
  TPL_EMPTY,         /* plain background: relief fallback */
  TPL_PHOTO,         /* smooth colour gradients, no clear object */
  TPL_SHAPE_COUNT
} tpl_shape;

const char *tpl_shape_name(tpl_shape s);

/* Draws shape s into a malloc'd w*h RGBA buffer (caller frees). The object
 * is dark and coloured on a light background; with alpha != 0 the
 * background is also transparent (alpha 0) and the object opaque. */
uint8_t *tpl_draw(tpl_shape s, uint32_t w, uint32_t h, int alpha,
                  uint32_t seed);

/* Encodes RGBA pixels as PNG with `channels` 1 (grey), 2 (grey + alpha),
 * 3 (RGB) or 4 (RGBA) per pixel. Returns malloc'd bytes (caller frees) and
 * sets *len; NULL on failure. */
uint8_t *tpl_png(const uint8_t *rgba, uint32_t w, uint32_t h, int channels,
                 size_t *len);

/* An RGB PNG whose tRNS chunk makes the colour of the first pixel
 * transparent. Caller frees. */
uint8_t *tpl_png_trns(const uint8_t *rgba, uint32_t w, uint32_t h, size_t *len);

/* Encodes RGBA pixels (alpha ignored) as a baseline JPEG, quality 90.
 * Returns malloc'd bytes (caller frees, free()) and sets *len. */
uint8_t *tpl_jpeg(const uint8_t *rgba, uint32_t w, uint32_t h, size_t *len);

/* Encodes RGBA pixels as WebP: lossless (alpha kept) when lossless != 0,
 * else lossy at quality 90. Caller frees (free()). */
uint8_t *tpl_webp(const uint8_t *rgba, uint32_t w, uint32_t h, int lossless,
                  size_t *len);

/* An animated WebP of `frames` frames (frame k is the image with its colours
 * inverted when k is odd), lossless. Caller frees. */
uint8_t *tpl_webp_anim(const uint8_t *rgba, uint32_t w, uint32_t h, int frames,
                       size_t *len);

/* Encodes RGBA pixels as GIF89a: colours quantised to a 6x6x6 cube, alpha
 * below 128 becomes the transparent index (then a graphic control block is
 * written); `frames` > 1 repeats the image (an animation), `interlace`
 * writes the rows in the four interlaced passes. Caller frees. */
uint8_t *tpl_gif(const uint8_t *rgba, uint32_t w, uint32_t h, int frames,
                 int interlace, size_t *len);

/* Encodes RGBA pixels as BMP with `bpp` 8 (a 6x6x6 palette), 24, or 32
 * (v5 header with an alpha mask); top_down writes a negative height.
 * Caller frees. */
uint8_t *tpl_bmp(const uint8_t *rgba, uint32_t w, uint32_t h, int bpp,
                 int top_down, size_t *len);

/* The 6x6x6 palette index of an RGB colour and that index's colour (for
 * tests that compare GIF/BMP-8 pixels). */
int tpl_cube_index(const uint8_t *rgb);
void tpl_cube_colour(int index, uint8_t rgb[3]);

/* A PNG made of a signature, an IHDR for w x h (8-bit RGBA) and then
 * `idat_len` bytes of a zlib stream of zeros, and IEND: a header-only bomb
 * when w x h is huge. Caller frees. */
uint8_t *tpl_png_header_only(uint32_t w, uint32_t h, size_t *len);

/* A valid 32x32 RGBA PNG carrying a zTXt chunk whose text inflates to
 * `inflated` bytes (a compressed-chunk bomb). Caller frees. */
uint8_t *tpl_png_ztxt_bomb(size_t inflated, size_t *len);

/* Reads a whole file into malloc'd memory; NULL on failure. */
uint8_t *tpl_read_file(const char *path, size_t *len);
/* Writes bytes to a file; 0 on success. */
int tpl_write_file(const char *path, const void *data, size_t len);

#endif
