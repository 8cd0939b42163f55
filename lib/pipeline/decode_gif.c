/* decode_gif.c: GIF through giflib's low-level (record by record) API.
 *
 * DGifSlurp() would decode every frame of an animation into memory of its
 * own, so a file of thousands of full-size frames could cost gigabytes.
 * Instead the records are read one at a time and only the first image is
 * decoded, a line at a time, into our RGBA canvas: the logical screen, whose
 * size is checked against the rule when the file is opened, before any pixel
 * memory exists. That first frame is what a browser shows before it plays.
 *
 * Hostile inputs this guards against: a frame that lies outside the screen
 * (refused), a pixel index past the colour map (drawn transparent), a
 * missing colour map (refused), a file that ends mid-frame (truncated), and
 * extension blocks past the first image (never read).
 */
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

#include "internal.h"

typedef struct {
  const uint8_t *d;
  size_t n, off;
  int ran_out; /* a read asked for more than was left */
} gif_src;

/* giflib's read callback: copies from our buffer; a short read is how
 * giflib learns the file ended. */
static int read_mem(GifFileType *g, GifByteType *buf, int len) {
  gif_src *s = g->UserData;
  if (len <= 0)
    return 0;
  size_t want = (size_t)len, left = s->n - s->off;
  if (want > left) {
    want = left;
    s->ran_out = 1;
  }
  memcpy(buf, s->d + s->off, want);
  s->off += want;
  return (int)want;
}

/* giflib reports a cut file under several codes (no screen descriptor,
 * read failed, ...): running out of input is what makes it "truncated". */
static orfeas_pl_code map_gif(const gif_src *src, int err, char *msg,
                              size_t msg_len) {
  const char *why = GifErrorString(err);
  if (why == NULL)
    why = "unknown error";
  if (src->ran_out && err != D_GIF_ERR_NOT_ENOUGH_MEM)
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                   "the GIF data ends early (%s)", why);
  switch (err) {
  case D_GIF_ERR_READ_FAILED:
  case D_GIF_ERR_EOF_TOO_SOON:
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                   "the GIF data ends early (%s)", why);
  case D_GIF_ERR_NOT_ENOUGH_MEM:
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory");
  default:
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT, "corrupt GIF: %s", why);
  }
}

static orfeas_pl_code open_gif(gif_src *src, uint32_t max_side,
                               uint64_t max_pixels, GifFileType **out,
                               char *msg, size_t msg_len) {
  *out = NULL;
  int err = 0;
  GifFileType *g = DGifOpen(src, read_mem, &err);
  if (g == NULL)
    return map_gif(src, err, msg, msg_len);
  orfeas_pl_code rc = ORFEAS_PL_OK;
  if (g->SWidth <= 0 || g->SHeight <= 0)
    rc = pl_fail(msg, msg_len, ORFEAS_PL_ESIZE,
                 "image is %dx%d px; each side must be %u-%u px", g->SWidth,
                 g->SHeight, ORFEAS_PL_MIN_SIDE, ORFEAS_PL_MAX_SIDE);
  else
    rc = pl_check_dims((uint32_t)g->SWidth, (uint32_t)g->SHeight, max_side,
                       max_pixels, msg, msg_len);
  if (rc != ORFEAS_PL_OK) {
    DGifCloseFile(g, &err);
    return rc;
  }
  *out = g;
  return ORFEAS_PL_OK;
}

/* Reads the records up to the first image and its descriptor (g->Image):
 * the frame must lie inside the screen and have a colour map. *transp is
 * the transparent index its graphic control block names (-1: none). */
static orfeas_pl_code first_image(gif_src *src, GifFileType *g, int *transp,
                                  char *msg, size_t msg_len) {
  *transp = -1;
  for (;;) {
    GifRecordType rt;
    if (DGifGetRecordType(g, &rt) != GIF_OK)
      return map_gif(src, g->Error, msg, msg_len);
    if (rt == IMAGE_DESC_RECORD_TYPE)
      break;
    if (rt == TERMINATE_RECORD_TYPE)
      return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                     "corrupt GIF: the file has no image");
    if (rt != EXTENSION_RECORD_TYPE)
      return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                     "corrupt GIF: unexpected record");
    int code = 0;
    GifByteType *ext = NULL;
    if (DGifGetExtension(g, &code, &ext) != GIF_OK)
      return map_gif(src, g->Error, msg, msg_len);
    /* The graphic control block before the first image says which index
     * is transparent; ext[0] is the block's length. */
    if (code == GRAPHICS_EXT_FUNC_CODE && ext != NULL && ext[0] >= 4) {
      GraphicsControlBlock gcb;
      if (DGifExtensionToGCB(ext[0], ext + 1, &gcb) == GIF_OK)
        *transp = gcb.TransparentColor;
    }
    while (ext != NULL)
      if (DGifGetExtensionNext(g, &ext) != GIF_OK)
        return map_gif(src, g->Error, msg, msg_len);
  }
  if (DGifGetImageDesc(g) != GIF_OK)
    return map_gif(src, g->Error, msg, msg_len);
  const GifImageDesc *im = &g->Image;
  int sw = g->SWidth, sh = g->SHeight;
  if (im->Width <= 0 || im->Height <= 0 || im->Left < 0 || im->Top < 0 ||
      im->Left > sw - im->Width || im->Top > sh - im->Height)
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt GIF: a %dx%d frame at (%d,%d) lies outside the "
                   "%dx%d screen",
                   im->Width, im->Height, im->Left, im->Top, sw, sh);
  const ColorMapObject *cm = im->ColorMap ? im->ColorMap : g->SColorMap;
  if (cm == NULL || cm->Colors == NULL || cm->ColorCount <= 0)
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt GIF: the first frame has no colour map");
  return ORFEAS_PL_OK;
}

/* The decoder's alpha rule: a transparent index, or a first frame that
 * leaves part of the screen unpainted. */
static int gif_has_alpha(const GifFileType *g, int transp) {
  return transp >= 0 || g->Image.Width != g->SWidth ||
         g->Image.Height != g->SHeight;
}

orfeas_pl_code pl_gif_probe(const uint8_t *d, size_t n, uint32_t max_side,
                            uint64_t max_pixels, orfeas_pl_image_info *info,
                            char *msg, size_t msg_len) {
  gif_src src = {d, n, 0, 0};
  GifFileType *g;
  orfeas_pl_code rc = open_gif(&src, max_side, max_pixels, &g, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  int transp, err;
  rc = first_image(&src, g, &transp, msg, msg_len);
  if (rc == ORFEAS_PL_OK) {
    info->width = (uint32_t)g->SWidth;
    info->height = (uint32_t)g->SHeight;
    info->has_alpha = gif_has_alpha(g, transp);
  }
  DGifCloseFile(g, &err);
  return rc;
}

/* Paints the first frame (g->Image, checked by first_image) into the
 * canvas, row by row. */
static orfeas_pl_code paint_frame(const gif_src *src, GifFileType *g,
                                  uint8_t *rgba, int transp, char *msg,
                                  size_t msg_len) {
  const GifImageDesc *im = &g->Image;
  const ColorMapObject *cm = im->ColorMap ? im->ColorMap : g->SColorMap;
  int sw = g->SWidth;
  /* One line of palette indexes; owned here. */
  GifPixelType *line = malloc((size_t)im->Width);
  if (line == NULL)
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory");
  /* Interlaced frames come in four passes: rows 0, 4, 2, 1 mod 8/8/4/2. */
  static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
  int passes = im->Interlace ? 4 : 1;
  orfeas_pl_code rc = ORFEAS_PL_OK;
  for (int p = 0; p < passes && rc == ORFEAS_PL_OK; p++) {
    int r0 = im->Interlace ? start[p] : 0, dr = im->Interlace ? step[p] : 1;
    for (int row = r0; row < im->Height; row += dr) {
      if (DGifGetLine(g, line, im->Width) != GIF_OK) {
        rc = map_gif(src, g->Error, msg, msg_len);
        break;
      }
      uint8_t *out =
          rgba + ((size_t)(im->Top + row) * (size_t)sw + (size_t)im->Left) * 4;
      for (int x = 0; x < im->Width; x++, out += 4) {
        int idx = line[x];
        if (idx == transp)
          continue;                  /* stays transparent */
        if (idx >= cm->ColorCount) { /* past the colour map: opaque black */
          out[0] = out[1] = out[2] = 0;
          out[3] = 255;
          continue;
        }
        out[0] = cm->Colors[idx].Red;
        out[1] = cm->Colors[idx].Green;
        out[2] = cm->Colors[idx].Blue;
        out[3] = 255;
      }
    }
  }
  free(line);
  return rc;
}

orfeas_pl_code pl_gif_decode(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, orfeas_pl_image *img,
                             char *msg, size_t msg_len) {
  gif_src src = {d, n, 0, 0};
  GifFileType *g;
  orfeas_pl_code rc = open_gif(&src, max_side, max_pixels, &g, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  int transp, err = 0;
  rc = first_image(&src, g, &transp, msg, msg_len);
  uint32_t w = (uint32_t)g->SWidth, h = (uint32_t)g->SHeight;
  size_t size = (size_t)w * h * 4;
  /* Owned by img once the decode succeeds. Starts transparent: what the
   * first frame does not paint is not part of the picture. */
  uint8_t *rgba = rc == ORFEAS_PL_OK ? calloc(size, 1) : NULL;
  if (rc == ORFEAS_PL_OK && rgba == NULL)
    rc = pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory (%zu bytes)",
                 size);
  if (rc == ORFEAS_PL_OK)
    rc = paint_frame(&src, g, rgba, transp, msg, msg_len);
  int alpha = gif_has_alpha(g, transp);
  DGifCloseFile(g, &err);
  if (rc != ORFEAS_PL_OK) {
    free(rgba);
    return rc;
  }
  img->width = w;
  img->height = h;
  img->has_alpha = alpha;
  img->rgba = rgba;
  return ORFEAS_PL_OK;
}
