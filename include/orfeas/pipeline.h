/* orfeas/pipeline.h: the ORFEAS 2D->3D pipeline, the whole public API.
 *
 * An uploaded PNG, JPEG, WebP, GIF or BMP becomes a closed, 2-manifold
 * triangle mesh that is
 * written as binary STL, OBJ, binary PLY or GLB 2.0, together with a quality
 * report. The work is classical geometry (no neural model), in seven stages
 * whose names are the `stage` label values and the WebSocket stage names:
 *
 *   image_loading        decode PNG (libspng), JPEG (TurboJPEG), WebP
 *                        (libwebp), GIF (giflib) or BMP (our own parser),
 *                        limits first
 *   image_preprocessing  foreground mask (alpha, else Otsu), quality grid,
 *                        well-composed fix
 *   shape_generation     inflate (distance transform) or relief mesh, in mm
 *   texture_synthesis    one colour per vertex, sampled from the image
 *   mesh_optimization    optional meshoptimizer simplification, verified
 *   mesh_export          STL / OBJ / PLY / GLB bytes, written by our own code
 *   quality_validation   one O(F) pass: closed, winding, shape, volume, score
 *
 * docs/pipeline.md describes the modes, the limits and the score formula.
 *
 * Conventions (curl/libuv style):
 *  - Every function that can fail returns an orfeas_pl_code; ORFEAS_PL_OK is
 *    0, and orfeas_pl_strerror() names any code. Functions that take a
 *    `char *msg, size_t msg_len` also write a one-line, actionable message
 *    there (always NUL-terminated when msg_len > 0; msg may be NULL).
 *  - Ownership: the caller allocates the structs (on the stack is fine); the
 *    library fills them and owns nothing afterwards. Memory the library puts
 *    into a struct is released by that struct's *_free() function, which is
 *    safe on a zeroed or already-freed struct.
 *  - Thread-safety: every function is re-entrant. There is no global mutable
 *    state, so any number of threads may run the pipeline at once, each on
 *    its own structs. Sharing one struct between threads needs the caller's
 *    lock, except const inputs (image bytes, options, a mesh), which may be
 *    read by several threads at once.
 */
#ifndef ORFEAS_PIPELINE_H
#define ORFEAS_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Errors ------------------------------------------------------------ */

typedef enum {
  ORFEAS_PL_OK = 0,
  ORFEAS_PL_EINVAL,      /* an option or argument is out of range (400) */
  ORFEAS_PL_EFORMAT,     /* not an image of any known type (400) */
  ORFEAS_PL_ETRUNCATED,  /* the image data ends early (400) */
  ORFEAS_PL_ECORRUPT,    /* the image data is malformed (400) */
  ORFEAS_PL_ESIZE,       /* a side is outside 32..4096 px (400) */
  ORFEAS_PL_EPIXELS,     /* more pixels than allowed (16,777,216) (400) */
  ORFEAS_PL_ENOMEM,      /* an allocation failed (500/507) */
  ORFEAS_PL_ECANCELLED,  /* the progress callback asked to stop */
  ORFEAS_PL_EINTERNAL,   /* a mesh failed the closed-manifold check: a bug */
  ORFEAS_PL_EUNSUPPORTED /* an image type (or a variant of one) that is
                            recognised but not decoded: TIFF, RLE BMP...
                            (415; the message names the accepted types) */
} orfeas_pl_code;

/* A static English description of `code` ("image side out of range").
 * Never NULL; unknown codes give "unknown error". */
const char *orfeas_pl_strerror(orfeas_pl_code code);

/* Nonzero when `code` is the client's fault (the API answers 400): bad
 * options and every image refusal. */
int orfeas_pl_is_client_error(orfeas_pl_code code);

/* ---- Stages and progress ----------------------------------------------- */

typedef enum {
  ORFEAS_PL_STAGE_IMAGE_LOADING = 0,
  ORFEAS_PL_STAGE_IMAGE_PREPROCESSING,
  ORFEAS_PL_STAGE_SHAPE_GENERATION,
  ORFEAS_PL_STAGE_TEXTURE_SYNTHESIS,
  ORFEAS_PL_STAGE_MESH_OPTIMIZATION,
  ORFEAS_PL_STAGE_MESH_EXPORT,
  ORFEAS_PL_STAGE_QUALITY_VALIDATION,
  ORFEAS_PL_STAGE_COUNT
} orfeas_pl_stage;

/* "image_loading" ... "quality_validation"; NULL for an unknown stage. */
const char *orfeas_pl_stage_name(orfeas_pl_stage stage);

typedef enum {
  ORFEAS_PL_EVENT_BEGIN = 0, /* the stage starts: progress 0 */
  ORFEAS_PL_EVENT_END        /* the stage finished: progress 1, duration set */
} orfeas_pl_event;

typedef struct {
  orfeas_pl_stage stage;
  const char *stage_name; /* orfeas_pl_stage_name(stage); static */
  orfeas_pl_event event;
  double progress;      /* 0..1 within the stage */
  double overall;       /* 0..1 over the whole job (weighted by stage) */
  uint64_t duration_ns; /* the stage's wall time; set on EVENT_END only */
} orfeas_pl_progress;

/* Called on the thread that runs orfeas_pl_run(), twice per stage (BEGIN and
 * END) in stage order. Return 0 to go on; nonzero cancels the job, which
 * then returns ORFEAS_PL_ECANCELLED. It must not call back into the same
 * job. */
typedef int (*orfeas_pl_progress_fn)(void *user, const orfeas_pl_progress *p);

/* ---- Options ----------------------------------------------------------- */

typedef enum {
  ORFEAS_PL_STL = 0, /* binary STL, mm, Z up; geometry only */
  ORFEAS_PL_OBJ,     /* Wavefront OBJ text, mm; geometry only */
  ORFEAS_PL_PLY,     /* binary little-endian PLY, mm, with vertex colours */
  ORFEAS_PL_GLB      /* GLB 2.0, metres, +Y up, normals and COLOR_0 */
} orfeas_pl_format;

/* "stl", "obj", "ply", "glb"; NULL for an unknown format. */
const char *orfeas_pl_format_name(orfeas_pl_format format);
/* "model/stl", "model/obj", "application/ply", "model/gltf-binary". */
const char *orfeas_pl_format_mime(orfeas_pl_format format);

typedef enum {
  ORFEAS_PL_MODE_AUTO = 0, /* inflate when a foreground exists, else relief */
  ORFEAS_PL_MODE_INFLATE,  /* silhouette inflation (falls back to relief
                              when the mask is empty or full) */
  ORFEAS_PL_MODE_RELIEF    /* lithophane-style heightmap on a flat base */
} orfeas_pl_mode;

/* "auto", "inflate", "relief". */
const char *orfeas_pl_mode_name(orfeas_pl_mode mode);

typedef struct {
  orfeas_pl_format format; /* default STL */
  orfeas_pl_mode mode;     /* default AUTO */
  int quality;             /* 1..10, default 7: picks the grid (docs) */
  double width_mm;         /* 1..1000, default 100 */
  double height_mm;        /* 1..1000, default 100 */
  double depth_mm;         /* 1..500, default 20 */
  /* Triangle ratio kept by meshoptimizer, in (0,1]; 1 (the default) skips
   * simplification. The result is always verified: see mesh_optimization. */
  double simplify_ratio;
  /* Image limits; 0 means the default (and they cannot be raised above it):
   * sides 32..4096 px, at most 16,777,216 pixels. */
  uint32_t max_side;
  uint64_t max_pixels;
  orfeas_pl_progress_fn progress; /* optional */
  void *progress_user;            /* passed to progress unchanged */
} orfeas_pl_options;

/* Fills `opt` with the defaults above. */
void orfeas_pl_options_init(orfeas_pl_options *opt);

/* Checks every option; ORFEAS_PL_EINVAL with a message naming the field. */
orfeas_pl_code orfeas_pl_options_check(const orfeas_pl_options *opt, char *msg,
                                       size_t msg_len);

/* Grid cells along the image's long side for a quality 1..10 (64..1024);
 * the grid never has more cells than the image has pixels. */
uint32_t orfeas_pl_quality_grid(int quality);

/* ---- Images ------------------------------------------------------------ */

#define ORFEAS_PL_MIN_SIDE 32u
#define ORFEAS_PL_MAX_SIDE 4096u
#define ORFEAS_PL_MAX_PIXELS 16777216u

typedef struct {
  uint32_t width, height;
  int has_alpha; /* the file carries transparency (alpha channel or tRNS) */
  uint8_t *rgba; /* width*height*4 bytes, rows top to bottom; owned by the
                    struct, released by orfeas_pl_image_free() */
} orfeas_pl_image;

/* The image types uploads may use, sniffed from the magic bytes. */
typedef enum {
  ORFEAS_PL_IMAGE_UNKNOWN = 0,
  ORFEAS_PL_IMAGE_PNG = 1,
  ORFEAS_PL_IMAGE_JPEG,
  ORFEAS_PL_IMAGE_WEBP, /* still, or the first frame of an animation */
  ORFEAS_PL_IMAGE_GIF,  /* the first frame */
  ORFEAS_PL_IMAGE_BMP   /* 1/4/8/16/24/32 bit, uncompressed or bit fields */
} orfeas_pl_image_type;

/* What the accepted types are called in messages. */
#define ORFEAS_PL_ACCEPTED_TYPES "PNG, JPEG, WebP, GIF or BMP"

/* What a probe tells about an image without decoding its pixels. */
typedef struct {
  orfeas_pl_image_type type;
  uint32_t width, height;
  int has_alpha; /* as orfeas_pl_image.has_alpha, by the decoder's own rule:
                    a PNG with an alpha channel or a tRNS chunk, a WebP with
                    alpha, a GIF whose first frame has a transparent index or
                    leaves part of its screen unpainted, a BMP whose alpha
                    mask is not 0 everywhere; never a JPEG */
} orfeas_pl_image_info;

/* The type from the first bytes alone (nothing is decoded). */
orfeas_pl_image_type orfeas_pl_image_sniff(const uint8_t *data, size_t len);
/* "PNG", "JPEG", "WEBP", "GIF", "BMP" ("unknown" for anything else). */
const char *orfeas_pl_image_type_name(orfeas_pl_image_type t);
/* The file extension: "png", "jpg", "webp", "gif", "bmp"; NULL for
 * anything else. */
const char *orfeas_pl_image_type_ext(orfeas_pl_image_type t);
/* "image/png", ... ; "application/octet-stream" for anything else. */
const char *orfeas_pl_image_type_mime(orfeas_pl_image_type t);

/* Reads only the header of an image (for a PNG, the chunks before its
 * image data, within the decoder's chunk limits; for a GIF, the records
 * before its first image; for a BMP, its headers and, with an alpha mask,
 * the alpha bytes) and checks it against the limits (max_side/max_pixels as
 * in the options; 0 = default). Allocates nothing for pixels. On success
 * *info is filled; on failure it is zeroed. */
orfeas_pl_code orfeas_pl_image_probe(const uint8_t *data, size_t len,
                                     uint32_t max_side, uint64_t max_pixels,
                                     orfeas_pl_image_info *info, char *msg,
                                     size_t msg_len);

/* Decodes an image into RGBA8. The header is checked first (as
 * orfeas_pl_image_probe), so oversized or malformed headers are refused
 * before any pixel memory is allocated. On failure `img` is left zeroed. */
orfeas_pl_code orfeas_pl_image_decode(const uint8_t *data, size_t len,
                                      uint32_t max_side, uint64_t max_pixels,
                                      orfeas_pl_image *img, char *msg,
                                      size_t msg_len);

void orfeas_pl_image_free(orfeas_pl_image *img);

/* Checks that the whole image decodes (truncated or damaged data is
 * ORFEAS_PL_ETRUNCATED / ORFEAS_PL_ECORRUPT, as orfeas_pl_image_decode
 * would say) without keeping its pixels: a PNG is inflated a row at a time,
 * a JPEG decoded at 1/8 scale; any other type is decoded and dropped. The
 * header is checked first, as orfeas_pl_image_probe. */
orfeas_pl_code orfeas_pl_image_verify(const uint8_t *data, size_t len,
                                      uint32_t max_side, uint64_t max_pixels,
                                      char *msg, size_t msg_len);

/* ---- Meshes ------------------------------------------------------------ */

/* An indexed triangle mesh in millimetres: X right, Y the image's up, Z out
 * of the image (the front). Triangles are counter-clockwise seen from
 * outside. All arrays are owned by the struct (orfeas_pl_mesh_free). */
typedef struct {
  uint32_t nverts;
  uint32_t ntris;
  float *pos;    /* nverts*3 */
  uint8_t *rgb;  /* nverts*3, or NULL (no colour) */
  uint32_t *idx; /* ntris*3 */
} orfeas_pl_mesh;

/* Allocates room for nverts/ntris (rgb too when with_rgb); contents are
 * uninitialised. ORFEAS_PL_ENOMEM leaves `m` zeroed. */
orfeas_pl_code orfeas_pl_mesh_alloc(orfeas_pl_mesh *m, uint32_t nverts,
                                    uint32_t ntris, int with_rgb);
void orfeas_pl_mesh_free(orfeas_pl_mesh *m);

/* ---- Quality ----------------------------------------------------------- */

typedef struct {
  uint32_t triangles, vertices;
  uint64_t open_edges; /* directed edges (a,b) with no twin (b,a) */
  uint64_t dup_edges;  /* directed edges used more than once */
  int closed;          /* open == 0 && dup == 0: watertight and
                          consistently wound */
  uint32_t degenerate; /* triangles with shape q < 1e-6 */
  uint32_t slivers;    /* triangles with 1e-6 <= q < 0.1 */
  double mean_shape;   /* mean q = 4*sqrt(3)*A / (l1^2+l2^2+l3^2) */
  double p10_shape;    /* 10th percentile of q (1/1024 resolution) */
  double min_shape;
  double volume_mm3; /* signed: positive when wound outward */
  double area_mm2;
  uint32_t components;   /* connected by shared vertices */
  int64_t euler;         /* V - E + F, E counted from the edges seen */
  double simplify_error; /* meshoptimizer's relative error (0 = none) */
  /* Terms and result (docs/pipeline.md explains each):
   *   T = 1 if closed, else 0.4 * max(0, 1 - 100 (open + dup) / 3F)
   *   D = 1 - degenerate / F          S = min(1, p10_shape / 0.5)
   *   E = 1 - min(1, simplify_error / 0.05)
   *   C = 1 if components == expected (or expected is 0), else min/max
   *   score = [F>0 && volume>0] * (0.40 T + 0.15 D + 0.20 S + 0.15 E
   *                                + 0.10 C)
   */
  double t_topology, d_degenerate, s_shape, e_error, c_components;
  double score;  /* 0..1 */
  char grade[3]; /* "A+", "A", "A-", "B+", ..., "D", "F" */
  int printable; /* closed && volume > 0 && score >= 0.80 */
} orfeas_pl_quality;

/* The O(F) pass over `m`. expected_components is what the caller built
 * (0 = unknown, the C term is then 1); simplify_error is meshoptimizer's
 * relative error (0 when not simplified). */
orfeas_pl_code orfeas_pl_quality_check(const orfeas_pl_mesh *m,
                                       uint32_t expected_components,
                                       double simplify_error,
                                       orfeas_pl_quality *q);

/* The letter for a score: A+ >= .95, A >= .90, A- >= .85, B+ >= .80,
 * B >= .75, B- >= .70, C+ >= .65, C >= .60, D >= .55, else F. Static. */
const char *orfeas_pl_grade(double score);

/* ---- Writers ----------------------------------------------------------- */

typedef struct {
  /* malloc'd (a writer's buffer of 64 KiB or more is 4 KiB-aligned, for
   * O_DIRECT writes without a copy); owned by the struct
   * (orfeas_pl_buffer_free) */
  uint8_t *data;
  size_t size;
  size_t cap;
} orfeas_pl_buffer;

void orfeas_pl_buffer_free(orfeas_pl_buffer *b);

/* Writes `m` in `format` into `out` (which must be zeroed or freed). STL,
 * OBJ and PLY keep millimetres and the mesh axes (Z out of the image, so a
 * printer lays the piece flat, front up); GLB is in metres with +Y the
 * image's up and carries unit vertex normals and, when m->rgb is set,
 * COLOR_0. */
orfeas_pl_code orfeas_pl_write(const orfeas_pl_mesh *m, orfeas_pl_format format,
                               orfeas_pl_buffer *out);

/* ---- The whole pipeline ------------------------------------------------ */

typedef struct {
  orfeas_pl_buffer file; /* the model file's bytes */
  orfeas_pl_format format;
  orfeas_pl_mode mode; /* the mode actually used (never AUTO) */
  uint32_t image_width, image_height;
  uint32_t grid_width, grid_height; /* cells */
  uint32_t mask_components;         /* foreground parts (1 for relief) */
  int simplified;                   /* 1 when the simplified mesh was shipped */
  int simplify_fallback;            /* 1 when a simplification was rejected */
  orfeas_pl_quality quality;
  uint64_t stage_ns[ORFEAS_PL_STAGE_COUNT];
  uint64_t total_ns;
  orfeas_pl_mesh mesh; /* kept only with orfeas_pl_run_keep_mesh() */
} orfeas_pl_result;

/* Runs all seven stages on an image file held in memory. On success `res`
 * holds the file and the report; on failure it is zeroed except stage_ns
 * of the stages that ran, and `msg` says why. Release `res` with
 * orfeas_pl_result_free() in both cases. */
orfeas_pl_code orfeas_pl_run(const uint8_t *image, size_t image_len,
                             const orfeas_pl_options *opt,
                             orfeas_pl_result *res, char *msg, size_t msg_len);

/* As orfeas_pl_run() on an image already decoded (a caller that had to
 * decode it whole anyway, e.g. to check an upload): image_loading only
 * checks its size against the options' limits. `img` is taken: its pixels
 * are released by the run, success or not, and *img is zeroed. */
orfeas_pl_code orfeas_pl_run_decoded(orfeas_pl_image *img,
                                     const orfeas_pl_options *opt,
                                     orfeas_pl_result *res, char *msg,
                                     size_t msg_len);

/* An image reduced to what the stages after image_preprocessing read: the
 * quality's grid of cells (its mask, colours and luminance), a few hundred
 * KB where the pixels it came from take MBs. Opaque; owned by whoever holds
 * the pointer, released by orfeas_pl_prepared_free() or by the run that
 * takes it. */
typedef struct orfeas_pl_prepared orfeas_pl_prepared;

/* Runs image_preprocessing on `img` for `quality` (1-10) now, e.g. while a
 * caller that just decoded the image still has its pixels in cache: *out
 * then holds the grid and the time the stage took (NULL on failure). `img`
 * is only read: the caller still owns and frees its pixels. */
orfeas_pl_code orfeas_pl_prepare(const orfeas_pl_image *img, int quality,
                                 orfeas_pl_prepared **out, char *msg,
                                 size_t msg_len);
/* The quality it was prepared for; its size in bytes. */
int orfeas_pl_prepared_quality(const orfeas_pl_prepared *p);
size_t orfeas_pl_prepared_bytes(const orfeas_pl_prepared *p);
void orfeas_pl_prepared_free(orfeas_pl_prepared *p);

/* As orfeas_pl_run_decoded() from a prepared image: the same model byte for
 * byte. image_loading checks the image's size against the options' limits;
 * image_preprocessing reports the time orfeas_pl_prepare() took.
 * opt->quality must be the one it was prepared for (ORFEAS_PL_EINVAL
 * otherwise). `*p` is taken, success or not, and set to NULL. */
orfeas_pl_code orfeas_pl_run_prepared(orfeas_pl_prepared **p,
                                      const orfeas_pl_options *opt,
                                      orfeas_pl_result *res, char *msg,
                                      size_t msg_len);

/* As orfeas_pl_run(), and also keeps the final mesh in res->mesh (tests,
 * tools). */
orfeas_pl_code orfeas_pl_run_keep_mesh(const uint8_t *image, size_t image_len,
                                       const orfeas_pl_options *opt,
                                       orfeas_pl_result *res, char *msg,
                                       size_t msg_len);

void orfeas_pl_result_free(orfeas_pl_result *res);

#ifdef __cplusplus
}
#endif

#endif
