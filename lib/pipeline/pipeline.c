/* pipeline.c: the seven stages in order, their timing and progress, the
 * options and the names. Each stage lives in its own file; this one only
 * sequences them and owns the job's intermediate buffers, which are all on
 * this call's stack or heap: nothing is shared between jobs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

const char *orfeas_pl_strerror(orfeas_pl_code code) {
  switch (code) {
  case ORFEAS_PL_OK:
    return "no error";
  case ORFEAS_PL_EINVAL:
    return "invalid option or argument";
  case ORFEAS_PL_EFORMAT:
    return "not an image (PNG, JPEG, WebP, GIF or BMP expected)";
  case ORFEAS_PL_ETRUNCATED:
    return "truncated image data";
  case ORFEAS_PL_ECORRUPT:
    return "corrupt image data";
  case ORFEAS_PL_ESIZE:
    return "image side out of range (32-4096 px)";
  case ORFEAS_PL_EPIXELS:
    return "too many pixels";
  case ORFEAS_PL_ENOMEM:
    return "out of memory";
  case ORFEAS_PL_ECANCELLED:
    return "cancelled";
  case ORFEAS_PL_EINTERNAL:
    return "internal error: mesh failed the closed-manifold check";
  case ORFEAS_PL_EUNSUPPORTED:
    return "image type not supported (PNG, JPEG, WebP, GIF or BMP expected)";
  }
  return "unknown error";
}

int orfeas_pl_is_client_error(orfeas_pl_code code) {
  return code == ORFEAS_PL_EINVAL || code == ORFEAS_PL_EFORMAT ||
         code == ORFEAS_PL_ETRUNCATED || code == ORFEAS_PL_ECORRUPT ||
         code == ORFEAS_PL_ESIZE || code == ORFEAS_PL_EPIXELS ||
         code == ORFEAS_PL_EUNSUPPORTED;
}

static const char *const stage_names[ORFEAS_PL_STAGE_COUNT] = {
    "image_loading",     "image_preprocessing", "shape_generation",
    "texture_synthesis", "mesh_optimization",   "mesh_export",
    "quality_validation"};

/* Share of a typical job's time per stage (pipeline_1024_glb's split in
 * docs/performance.md), so `overall` moves roughly with the clock. */
static const double stage_weight[ORFEAS_PL_STAGE_COUNT] = {
    0.40, 0.18, 0.08, 0.03, 0.01, 0.10, 0.20};

const char *orfeas_pl_stage_name(orfeas_pl_stage stage) {
  return (unsigned)stage < ORFEAS_PL_STAGE_COUNT ? stage_names[stage] : NULL;
}

const char *orfeas_pl_format_name(orfeas_pl_format f) {
  static const char *const names[] = {"stl", "obj", "ply", "glb"};
  return (unsigned)f < 4 ? names[f] : NULL;
}

const char *orfeas_pl_format_mime(orfeas_pl_format f) {
  static const char *const mimes[] = {"model/stl", "model/obj",
                                      "application/ply", "model/gltf-binary"};
  return (unsigned)f < 4 ? mimes[f] : NULL;
}

const char *orfeas_pl_mode_name(orfeas_pl_mode mode) {
  static const char *const names[] = {"auto", "inflate", "relief"};
  return (unsigned)mode < 3 ? names[mode] : NULL;
}

uint32_t orfeas_pl_quality_grid(int quality) {
  static const uint32_t grid[10] = {64,  96,  128, 160, 192,
                                    224, 256, 384, 512, 1024};
  if (quality < 1)
    quality = 1;
  if (quality > 10)
    quality = 10;
  return grid[quality - 1];
}

void orfeas_pl_options_init(orfeas_pl_options *opt) {
  memset(opt, 0, sizeof *opt);
  opt->format = ORFEAS_PL_STL;
  opt->mode = ORFEAS_PL_MODE_AUTO;
  opt->quality = 7;
  opt->width_mm = 100;
  opt->height_mm = 100;
  opt->depth_mm = 20;
  opt->simplify_ratio = 1.0;
}

static int in_range(double v, double lo, double hi) {
  return isfinite(v) && v >= lo && v <= hi;
}

orfeas_pl_code orfeas_pl_options_check(const orfeas_pl_options *o, char *msg,
                                       size_t msg_len) {
  if (o == NULL)
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL, "options are NULL");
  if ((unsigned)o->format > ORFEAS_PL_GLB)
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL,
                   "format must be stl, obj, ply or glb");
  if ((unsigned)o->mode > ORFEAS_PL_MODE_RELIEF)
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL,
                   "mode must be auto, inflate or relief");
  if (o->quality < 1 || o->quality > 10)
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL,
                   "quality must be 1-10 (got %d)", o->quality);
  if (!in_range(o->width_mm, 1, 1000) || !in_range(o->height_mm, 1, 1000))
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL,
                   "width and height must be 1-1000 mm");
  if (!in_range(o->depth_mm, 1, 500))
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL, "depth must be 1-500 mm");
  if (!(o->simplify_ratio > 0 && o->simplify_ratio <= 1))
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL,
                   "simplify_ratio must be in (0, 1]");
  if (o->max_side != 0 &&
      (o->max_side < ORFEAS_PL_MIN_SIDE || o->max_side > ORFEAS_PL_MAX_SIDE))
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL,
                   "max_side must be 0 or %u-%u", ORFEAS_PL_MIN_SIDE,
                   ORFEAS_PL_MAX_SIDE);
  return ORFEAS_PL_OK;
}

orfeas_pl_code orfeas_pl_write(const orfeas_pl_mesh *m, orfeas_pl_format f,
                               orfeas_pl_buffer *out) {
  if (m == NULL || out == NULL)
    return ORFEAS_PL_EINVAL;
  switch (f) {
  case ORFEAS_PL_STL:
    return pl_write_stl(m, out);
  case ORFEAS_PL_OBJ:
    return pl_write_obj(m, out);
  case ORFEAS_PL_PLY:
    return pl_write_ply(m, out);
  case ORFEAS_PL_GLB:
    return pl_write_glb(m, out);
  }
  return ORFEAS_PL_EINVAL;
}

void orfeas_pl_result_free(orfeas_pl_result *res) {
  if (res == NULL)
    return;
  orfeas_pl_buffer_free(&res->file);
  orfeas_pl_mesh_free(&res->mesh);
  memset(res, 0, sizeof *res);
}

/* ---- one job ----------------------------------------------------------- */

typedef struct {
  const orfeas_pl_options *opt;
  orfeas_pl_result *res;
  uint64_t t0;
  uint64_t carried_ns; /* the stage's time spent before the run (prepare) */
  double done;         /* weight of the finished stages */
} job;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static orfeas_pl_code notify(job *j, orfeas_pl_stage s, orfeas_pl_event ev,
                             uint64_t dur) {
  if (j->opt->progress == NULL)
    return ORFEAS_PL_OK;
  orfeas_pl_progress p = {
      s, stage_names[s], ev, ev == ORFEAS_PL_EVENT_END, j->done, dur};
  if (p.overall > 1)
    p.overall = 1;
  return j->opt->progress(j->opt->progress_user, &p) ? ORFEAS_PL_ECANCELLED
                                                     : ORFEAS_PL_OK;
}

static orfeas_pl_code begin(job *j, orfeas_pl_stage s) {
  j->t0 = now_ns();
  return notify(j, s, ORFEAS_PL_EVENT_BEGIN, 0);
}

static orfeas_pl_code end(job *j, orfeas_pl_stage s) {
  uint64_t d = now_ns() - j->t0 + j->carried_ns;
  j->carried_ns = 0;
  j->res->stage_ns[s] = d;
  j->res->total_ns += d;
  j->done += stage_weight[s];
  /* The last stage always lands exactly on 1, whatever the rounding. */
  if (s + 1 == ORFEAS_PL_STAGE_COUNT)
    j->done = 1;
  return notify(j, s, ORFEAS_PL_EVENT_END, d);
}

/* The job's intermediate state; every pointer is owned here and released
 * by job_free(). */
typedef struct {
  orfeas_pl_image img;
  orfeas_pl_prepared *prep; /* orfeas_pl_run_prepared: the grid, made */
  pl_grid grid;
  pl_shape shape;
} job_state;

struct orfeas_pl_prepared {
  pl_grid grid;
  uint32_t width, height; /* the image's */
  int quality;
  uint64_t ns; /* what image_preprocessing took */
};

static void job_free(job_state *st) {
  orfeas_pl_image_free(&st->img);
  orfeas_pl_prepared_free(st->prep);
  st->prep = NULL;
  pl_grid_free(&st->grid);
  pl_shape_free(&st->shape);
}

/* The seven stages in order, each between STAGE_BEGIN and STAGE_END (the
 * progress events and cancellation); over 80 lines because each stage is a
 * few lines of calls into its own file, and they read best in a row. */
static orfeas_pl_code stages(job *j, job_state *st, const uint8_t *image,
                             size_t image_len, char *msg, size_t msg_len) {
  /* st->img already set: the decoded image (orfeas_pl_run_decoded). */
  const orfeas_pl_options *o = j->opt;
  orfeas_pl_result *r = j->res;
  orfeas_pl_code rc;
#define STAGE_BEGIN(s)                                                         \
  if ((rc = begin(j, s)) != ORFEAS_PL_OK)                                      \
    return pl_fail(msg, msg_len, rc, "cancelled before %s", stage_names[s]);
#define STAGE_END(s)                                                           \
  if ((rc = end(j, s)) != ORFEAS_PL_OK)                                        \
    return pl_fail(msg, msg_len, rc, "cancelled after %s", stage_names[s]);
#define OOM(what)                                                              \
  pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory in %s", what)

  STAGE_BEGIN(ORFEAS_PL_STAGE_IMAGE_LOADING);
  /* Decoded or prepared before the run: only the size is checked. */
  rc = st->prep == NULL && st->img.rgba == NULL
           ? orfeas_pl_image_decode(image, image_len, o->max_side,
                                    o->max_pixels, &st->img, msg, msg_len)
           : pl_check_dims(st->prep ? st->prep->width : st->img.width,
                           st->prep ? st->prep->height : st->img.height,
                           o->max_side, o->max_pixels, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  r->image_width = st->prep ? st->prep->width : st->img.width;
  r->image_height = st->prep ? st->prep->height : st->img.height;
  STAGE_END(ORFEAS_PL_STAGE_IMAGE_LOADING);

  STAGE_BEGIN(ORFEAS_PL_STAGE_IMAGE_PREPROCESSING);
  if (st->prep != NULL) { /* made by orfeas_pl_prepare(), timed there */
    st->grid = st->prep->grid;
    memset(&st->prep->grid, 0, sizeof st->prep->grid);
    j->carried_ns = st->prep->ns;
  } else if (pl_grid_build(&st->img, orfeas_pl_quality_grid(o->quality),
                           &st->grid) != ORFEAS_PL_OK)
    return OOM("image_preprocessing");
  orfeas_pl_image_free(&st->img); /* the grid has all later stages need */
  pl_grid *g = &st->grid;
  r->grid_width = g->gw;
  r->grid_height = g->gh;
  /* Inflation needs a silhouette: an empty or full mask has none. */
  int degenerate_mask = g->fg_cells == 0 || g->fg_cells == g->gw * g->gh;
  r->mode = o->mode == ORFEAS_PL_MODE_RELIEF || degenerate_mask
                ? ORFEAS_PL_MODE_RELIEF
                : ORFEAS_PL_MODE_INFLATE;
  r->mask_components = r->mode == ORFEAS_PL_MODE_RELIEF ? 1 : g->components;
  STAGE_END(ORFEAS_PL_STAGE_IMAGE_PREPROCESSING);

  STAGE_BEGIN(ORFEAS_PL_STAGE_SHAPE_GENERATION);
  if (pl_shape_build(g, r->mode, o->width_mm, o->height_mm, o->depth_mm,
                     &st->shape) != ORFEAS_PL_OK)
    return OOM("shape_generation");
  STAGE_END(ORFEAS_PL_STAGE_SHAPE_GENERATION);

  STAGE_BEGIN(ORFEAS_PL_STAGE_TEXTURE_SYNTHESIS);
  if (pl_colour(g, r->mode, &st->shape) != ORFEAS_PL_OK)
    return OOM("texture_synthesis");
  STAGE_END(ORFEAS_PL_STAGE_TEXTURE_SYNTHESIS);

  STAGE_BEGIN(ORFEAS_PL_STAGE_MESH_OPTIMIZATION);
  pl_simplify_report sr;
  if (pl_simplify(&st->shape.mesh, o->simplify_ratio, &sr) != ORFEAS_PL_OK)
    return OOM("mesh_optimization");
  r->simplified = sr.simplified;
  r->simplify_fallback = sr.fallback;
  STAGE_END(ORFEAS_PL_STAGE_MESH_OPTIMIZATION);

  STAGE_BEGIN(ORFEAS_PL_STAGE_MESH_EXPORT);
  r->format = o->format;
  rc = orfeas_pl_write(&st->shape.mesh, o->format, &r->file);
  if (rc != ORFEAS_PL_OK)
    return OOM("mesh_export");
  STAGE_END(ORFEAS_PL_STAGE_MESH_EXPORT);

  STAGE_BEGIN(ORFEAS_PL_STAGE_QUALITY_VALIDATION);
  if (orfeas_pl_quality_check(&st->shape.mesh, r->mask_components, sr.error,
                              &r->quality) != ORFEAS_PL_OK)
    return OOM("quality_validation");
  /* Closed by construction: anything else is a bug, never a shipped file. */
  if (!r->quality.closed || r->quality.volume_mm3 <= 0)
    return pl_fail(msg, msg_len, ORFEAS_PL_EINTERNAL,
                   "mesh not closed (%llu open, %llu duplicated edges) or "
                   "volume %.3f <= 0",
                   (unsigned long long)r->quality.open_edges,
                   (unsigned long long)r->quality.dup_edges,
                   r->quality.volume_mm3);
  STAGE_END(ORFEAS_PL_STAGE_QUALITY_VALIDATION);
#undef STAGE_BEGIN
#undef STAGE_END
#undef OOM
  return ORFEAS_PL_OK;
}

/* One of image (a file), decoded or prepared is the input; decoded and
 * prepared are taken, whatever happens. */
static orfeas_pl_code run(const uint8_t *image, size_t image_len,
                          orfeas_pl_image *decoded,
                          orfeas_pl_prepared **prepared,
                          const orfeas_pl_options *opt, orfeas_pl_result *res,
                          char *msg, size_t msg_len, int keep_mesh) {
  job_state st;
  memset(&st, 0, sizeof st);
  if (decoded != NULL) {
    st.img = *decoded;
    memset(decoded, 0, sizeof *decoded);
  }
  if (prepared != NULL) {
    st.prep = *prepared;
    *prepared = NULL;
  }
  if (res == NULL || (decoded != NULL && st.img.rgba == NULL) ||
      (prepared != NULL && st.prep == NULL)) {
    job_free(&st);
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL,
                   res == NULL ? "result is NULL" : "no image");
  }
  memset(res, 0, sizeof *res);
  if (msg != NULL && msg_len > 0)
    msg[0] = '\0';
  orfeas_pl_code rc = orfeas_pl_options_check(opt, msg, msg_len);
  if (rc == ORFEAS_PL_OK && st.prep != NULL && st.prep->quality != opt->quality)
    rc = pl_fail(msg, msg_len, ORFEAS_PL_EINVAL,
                 "the image was prepared for quality %d, not %d",
                 st.prep->quality, opt->quality);
  if (rc != ORFEAS_PL_OK) {
    job_free(&st);
    return rc;
  }
  job j = {opt, res, 0, 0, 0};
  rc = stages(&j, &st, image, image_len, msg, msg_len);
  if (rc == ORFEAS_PL_OK && keep_mesh) {
    res->mesh = st.shape.mesh; /* ownership moves to the result */
    memset(&st.shape.mesh, 0, sizeof st.shape.mesh);
  }
  job_free(&st);
  if (rc != ORFEAS_PL_OK) {
    /* Keep the timings of the stages that ran; drop everything else. */
    uint64_t ns[ORFEAS_PL_STAGE_COUNT], total = res->total_ns;
    memcpy(ns, res->stage_ns, sizeof ns);
    orfeas_pl_result_free(res);
    memcpy(res->stage_ns, ns, sizeof ns);
    res->total_ns = total;
    if (msg != NULL && msg_len > 0 && msg[0] == '\0')
      snprintf(msg, msg_len, "%s", orfeas_pl_strerror(rc));
  }
  return rc;
}

orfeas_pl_code orfeas_pl_run(const uint8_t *image, size_t image_len,
                             const orfeas_pl_options *opt,
                             orfeas_pl_result *res, char *msg, size_t msg_len) {
  return run(image, image_len, NULL, NULL, opt, res, msg, msg_len, 0);
}

orfeas_pl_code orfeas_pl_run_decoded(orfeas_pl_image *img,
                                     const orfeas_pl_options *opt,
                                     orfeas_pl_result *res, char *msg,
                                     size_t msg_len) {
  return run(NULL, 0, img, NULL, opt, res, msg, msg_len, 0);
}

orfeas_pl_code orfeas_pl_run_prepared(orfeas_pl_prepared **p,
                                      const orfeas_pl_options *opt,
                                      orfeas_pl_result *res, char *msg,
                                      size_t msg_len) {
  orfeas_pl_prepared *none = NULL;
  return run(NULL, 0, NULL, p ? p : &none, opt, res, msg, msg_len, 0);
}

orfeas_pl_code orfeas_pl_prepare(const orfeas_pl_image *img, int quality,
                                 orfeas_pl_prepared **out, char *msg,
                                 size_t msg_len) {
  if (out != NULL)
    *out = NULL;
  if (out == NULL || img == NULL || img->rgba == NULL)
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL,
                   out == NULL ? "out is NULL" : "no image");
  if (quality < 1 || quality > 10)
    return pl_fail(msg, msg_len, ORFEAS_PL_EINVAL,
                   "quality must be 1-10 (got %d)", quality);
  orfeas_pl_prepared *p = calloc(1, sizeof *p);
  uint64_t t0 = now_ns();
  if (p == NULL || pl_grid_build(img, orfeas_pl_quality_grid(quality),
                                 &p->grid) != ORFEAS_PL_OK) {
    free(p);
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM,
                   "out of memory in image_preprocessing");
  }
  p->width = img->width;
  p->height = img->height;
  p->quality = quality;
  p->ns = now_ns() - t0;
  *out = p;
  return ORFEAS_PL_OK;
}

int orfeas_pl_prepared_quality(const orfeas_pl_prepared *p) {
  return p ? p->quality : 0;
}

size_t orfeas_pl_prepared_bytes(const orfeas_pl_prepared *p) {
  return p ? sizeof *p + (size_t)p->grid.gw * p->grid.gh * 5 : 0;
}

void orfeas_pl_prepared_free(orfeas_pl_prepared *p) {
  if (p == NULL)
    return;
  pl_grid_free(&p->grid);
  free(p);
}

orfeas_pl_code orfeas_pl_run_keep_mesh(const uint8_t *image, size_t image_len,
                                       const orfeas_pl_options *opt,
                                       orfeas_pl_result *res, char *msg,
                                       size_t msg_len) {
  return run(image, image_len, NULL, NULL, opt, res, msg, msg_len, 1);
}
