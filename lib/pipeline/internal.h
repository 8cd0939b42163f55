/* internal.h: what the pipeline's files share and nothing else uses.
 *
 * The stages hand each other plain structs; every pointer in them is owned by
 * the struct and released by its *_free(). Nothing here keeps global state:
 * the pipeline is re-entrant because every buffer lives in a job's structs.
 */
#ifndef ORFEAS_PL_INTERNAL_H
#define ORFEAS_PL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "orfeas/pipeline.h"

/* Writes a formatted message into msg (if any) and returns `code`, so error
 * paths read `return pl_fail(msg, len, ORFEAS_PL_ESIZE, "...", ...);`. */
orfeas_pl_code pl_fail(char *msg, size_t msg_len, orfeas_pl_code code,
                       const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- decode ------------------------------------------------------------ */

/* Effective limits: 0 selects the default; nothing may exceed it. */
void pl_limits(uint32_t *max_side, uint64_t *max_pixels);
/* Checks w x h against the limits (the one place the rule is written). */
orfeas_pl_code pl_check_dims(uint32_t w, uint32_t h, uint32_t max_side,
                             uint64_t max_pixels, char *msg, size_t msg_len);

int pl_is_png(const uint8_t *d, size_t n);
int pl_is_jpeg(const uint8_t *d, size_t n);
orfeas_pl_code pl_png_probe(const uint8_t *d, size_t n, uint32_t max_side,
                            uint64_t max_pixels, orfeas_pl_image_info *info,
                            char *msg, size_t msg_len);
orfeas_pl_code pl_png_decode(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, orfeas_pl_image *img,
                             char *msg, size_t msg_len);
/* Reads and checks every byte of the image data, keeping one row (PNG) or a
 * 1/8-scale grey copy (JPEG): orfeas_pl_image_verify. */
orfeas_pl_code pl_png_verify(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, char *msg, size_t msg_len);
orfeas_pl_code pl_jpeg_verify(const uint8_t *d, size_t n, uint32_t max_side,
                              uint64_t max_pixels, char *msg, size_t msg_len);
orfeas_pl_code pl_jpeg_probe(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, orfeas_pl_image_info *info,
                             char *msg, size_t msg_len);
orfeas_pl_code pl_jpeg_decode(const uint8_t *d, size_t n, uint32_t max_side,
                              uint64_t max_pixels, orfeas_pl_image *img,
                              char *msg, size_t msg_len);
/* WebP (libwebp; an animation gives its first frame), GIF (giflib; the
 * first frame on its logical screen), BMP (decode_bmp.c, our own parser).
 * Same contract as the PNG and JPEG pair: dimensions checked before any
 * pixel allocation. */
orfeas_pl_code pl_webp_probe(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, orfeas_pl_image_info *info,
                             char *msg, size_t msg_len);
orfeas_pl_code pl_webp_decode(const uint8_t *d, size_t n, uint32_t max_side,
                              uint64_t max_pixels, orfeas_pl_image *img,
                              char *msg, size_t msg_len);
orfeas_pl_code pl_gif_probe(const uint8_t *d, size_t n, uint32_t max_side,
                            uint64_t max_pixels, orfeas_pl_image_info *info,
                            char *msg, size_t msg_len);
orfeas_pl_code pl_gif_decode(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, orfeas_pl_image *img,
                             char *msg, size_t msg_len);
orfeas_pl_code pl_bmp_probe(const uint8_t *d, size_t n, uint32_t max_side,
                            uint64_t max_pixels, orfeas_pl_image_info *info,
                            char *msg, size_t msg_len);
orfeas_pl_code pl_bmp_decode(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, orfeas_pl_image *img,
                             char *msg, size_t msg_len);

/* ---- mask (image_preprocessing) ---------------------------------------- */

typedef enum { PL_MASK_ALPHA = 0, PL_MASK_OTSU } pl_mask_source;

/* The image brought down to the quality grid: one cell per block of pixels. */
typedef struct {
  uint32_t gw, gh; /* cells */
  uint8_t *fg;     /* gw*gh: 1 = foreground (owned) */
  uint8_t *rgb;    /* gw*gh*3: mean colour of the cell (owned) */
  uint8_t *lum;    /* gw*gh: mean luminance of the cell (owned) */
  pl_mask_source source;
  int otsu_threshold; /* when source == OTSU */
  int otsu_fg_dark;   /* 1: foreground is the dark side */
  uint32_t fg_cells;
  uint32_t components; /* 4-connected foreground parts (after the fix) */
  uint32_t fixes;      /* cells filled by the well-composed fix */
} pl_grid;

orfeas_pl_code pl_grid_build(const orfeas_pl_image *img, uint32_t grid_long,
                             pl_grid *g);
void pl_grid_free(pl_grid *g);
/* Fills cells until no 2x2 block is a diagonal-only pattern; returns the
 * number of cells filled. */
uint32_t pl_well_composed(uint8_t *fg, uint32_t gw, uint32_t gh);
/* Nonzero when no 2x2 block of fg is diagonal-only. */
int pl_is_well_composed(const uint8_t *fg, uint32_t gw, uint32_t gh);
/* 4-connected foreground components; ORFEAS_PL_ENOMEM on failure. */
orfeas_pl_code pl_count_components(const uint8_t *fg, uint32_t gw, uint32_t gh,
                                   uint32_t *out);
/* Otsu's threshold of a 256-bin histogram (pixels <= t are one class). */
int pl_otsu(const uint64_t hist[256]);

/* ---- distance transform ------------------------------------------------ */

/* Exact Euclidean distance transform (Felzenszwalb-Huttenlocher) of a
 * w x h grid: out[i] = distance from i to the nearest cell with seed[i] != 0
 * (0 on seeds; a large value when there is no seed). */
orfeas_pl_code pl_edt(const uint8_t *seed, uint32_t w, uint32_t h, float *out);

/* ---- mesher (shape_generation) ----------------------------------------- */

typedef struct {
  orfeas_pl_mesh mesh; /* rgb left NULL here; color.c fills it */
  uint32_t *vgrid;     /* nverts: the grid vertex each mesh vertex sits on
                          (owned) */
  uint32_t gw, gh;
} pl_shape;

/* Builds the closed mesh over the foreground cells of g (all cells for
 * relief) with the mode's heights, scaled to the options' millimetres. */
orfeas_pl_code pl_shape_build(const pl_grid *g, orfeas_pl_mode mode,
                              double width_mm, double height_mm,
                              double depth_mm, pl_shape *s);
void pl_shape_free(pl_shape *s);

/* ---- color.c (texture_synthesis) ---------------------------------------- */

orfeas_pl_code pl_colour(const pl_grid *g, orfeas_pl_mode mode, pl_shape *s);

/* ---- simplify (mesh_optimization) -------------------------------------- */

typedef struct {
  int simplified; /* the shipped mesh is the simplified one */
  int fallback;   /* at least one attempt was rejected */
  double error;   /* meshoptimizer's relative error of the shipped mesh */
} pl_simplify_report;

/* Simplifies m in place toward ratio*ntris triangles when ratio < 1, keeping
 * the result only if it is still closed with positive volume; otherwise
 * tries a milder ratio, then keeps the original. */
orfeas_pl_code pl_simplify(orfeas_pl_mesh *m, double ratio,
                           pl_simplify_report *rep);

/* ---- writers ----------------------------------------------------------- */

orfeas_pl_code pl_buf_reserve(orfeas_pl_buffer *b, size_t extra);
orfeas_pl_code pl_buf_append(orfeas_pl_buffer *b, const void *p, size_t n);
orfeas_pl_code pl_buf_printf(orfeas_pl_buffer *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Little-endian stores into a buffer that has the room (reserve first). */
void pl_put_u32(uint8_t *p, uint32_t v);
void pl_put_u16(uint8_t *p, uint16_t v);
void pl_put_f32(uint8_t *p, float v);

/* Unit normal of triangle t (0,0,0 when degenerate). */
void pl_tri_normal(const orfeas_pl_mesh *m, uint32_t t, float n[3]);

orfeas_pl_code pl_write_stl(const orfeas_pl_mesh *m, orfeas_pl_buffer *b);
orfeas_pl_code pl_write_obj(const orfeas_pl_mesh *m, orfeas_pl_buffer *b);
orfeas_pl_code pl_write_ply(const orfeas_pl_mesh *m, orfeas_pl_buffer *b);
orfeas_pl_code pl_write_glb(const orfeas_pl_mesh *m, orfeas_pl_buffer *b);

#endif
