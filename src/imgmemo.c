/* imgmemo.c: what the upload check learned about an image, kept for its
 * job, by the image's SHA-256 (docs/performance.md, "Durable jobs").
 *
 *   checked  the bytes passed the upload check (routes.c). A later upload
 *            of the same bytes skips the check: the verdict of a decoder
 *            on the same bytes and limits cannot differ. A re-submitted
 *            image (a cache hit's usual case) then costs no decode.
 *   stored   the upload file of a job that stored these bytes (durably:
 *            set once its record committed), so a re-upload is a hard
 *            link to it (jobs.c) instead of a write and its sync.
 *   pixels   the RGBA the check decoded whole (every type but JPEG, whose
 *            check is a cheap 1/8-scale decode), until a worker takes them
 *            for orfeas_pl_run_decoded: one decode per job instead of two
 *            (the check's and the pipeline's image_loading). The worker
 *            uses them only while the job's stored upload exists: the
 *            upload stays the job's input, the pixels a cache of it.
 *   grid     what the pixels become at generate-3d (od_imgmemo_prepare,
 *            on the request's thread, moments after the upload's check as
 *            a rule: the client's next request): orfeas_pl_prepare runs
 *            the job's image_preprocessing (the only stage that reads
 *            pixels) while they are still likely in cache, and the memo keeps
 *            the quality's grid instead, a few hundred KB. The worker then
 *            starts from the grid (orfeas_pl_run_prepared, the same model
 *            byte for byte). Without this the pixels wait in memory while
 *            the queue drains and the worker read them cold: 1.7 ms more a
 *            1024 px job (docs/performance.md, api_vs_pipeline).
 *
 * Bound: --image-memo-mb, counting the pixels or grid plus 16 KiB per
 * entry (a grid larger than its pixels, quality 10, is kept only if it
 * fits).
 * Pixels are only a saving: a worker that finds none reads the upload from
 * the data dir and decodes it, as after a restart. So when new pixels do
 * not fit, the least recently used entries that hold none go first, then
 * pixels unused for PIXELS_TTL_S (an upload never generated), and if that
 * is not enough the new image is remembered as checked without its pixels:
 * the pixels already kept belong to jobs that run earlier (the queue is
 * first in, first out). An image whose pixels take more than a quarter of
 * the bound is checked row by row and only remembered as checked. 0 turns
 * the memo off. orfeas_image_memo_bytes shows what it holds and
 * orfeas_image_memo_events_total what it saved. One mutex; the pixels are
 * moved in and out, never copied under it.
 */
#include <stdlib.h>
#include <string.h>

#include "orfeasd.h"

/* Bytes charged per entry besides its pixels: the list is searched
 * linearly, so it is kept short (bound / 16 KiB entries: 8192 at the
 * default 128 MB, a search of a few microseconds). */
#define ENTRY_COST 16384
#define PIXELS_TTL_S 600.0

typedef struct memo_entry {
  uint8_t digest[32];
  double t_put;        /* od_now() when the pixels came */
  char upload[48];     /* "<job id>.<ext>": a stored upload of these bytes */
  orfeas_pl_image img; /* rgba NULL: no pixels */
  orfeas_pl_prepared *prep; /* the pixels made a grid (never with img) */
  struct memo_entry *prev, *next;
} memo_entry;

struct od_imgmemo {
  pthread_mutex_t mu;
  memo_entry *head, *tail; /* head: most recent */
  size_t bytes, bound;
};

static size_t cost(const memo_entry *e) {
  return ENTRY_COST +
         (e->img.rgba ? (size_t)e->img.width * e->img.height * 4 : 0) +
         orfeas_pl_prepared_bytes(e->prep);
}

/* 1 when the entry holds pixels or their grid: a saving for its job. */
static int holds(const memo_entry *e) {
  return e->img.rgba != NULL || e->prep != NULL;
}

static void entry_free(memo_entry *e) {
  orfeas_pl_image_free(&e->img);
  orfeas_pl_prepared_free(e->prep);
  free(e);
}

static void unlink_entry(od_imgmemo *m, memo_entry *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    m->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    m->tail = e->prev;
  e->prev = e->next = NULL;
}

static void push_front(od_imgmemo *m, memo_entry *e) {
  e->next = m->head;
  if (m->head)
    m->head->prev = e;
  m->head = e;
  if (m->tail == NULL)
    m->tail = e;
}

static memo_entry *find(od_imgmemo *m, const uint8_t digest[32]) {
  for (memo_entry *e = m->head; e; e = e->next)
    if (memcmp(e->digest, digest, 32) == 0)
      return e;
  return NULL;
}

od_imgmemo *od_imgmemo_new(size_t bound) {
  od_imgmemo *m = calloc(1, sizeof *m);
  if (m == NULL)
    return NULL;
  pthread_mutex_init(&m->mu, NULL);
  m->bound = bound;
  return m;
}

void od_imgmemo_free(od_imgmemo *m) {
  if (m == NULL)
    return;
  while (m->head) {
    memo_entry *e = m->head;
    unlink_entry(m, e);
    entry_free(e);
  }
  pthread_mutex_destroy(&m->mu);
  free(m);
}

int od_imgmemo_keeps_pixels(const od_imgmemo *m, uint32_t w, uint32_t h) {
  return m != NULL && (uint64_t)w * h * 4 + ENTRY_COST <= m->bound / 4;
}

int od_imgmemo_checked(od_imgmemo *m, const uint8_t digest[32]) {
  if (m == NULL)
    return 0;
  pthread_mutex_lock(&m->mu);
  memo_entry *e = find(m, digest);
  if (e != NULL) {
    unlink_entry(m, e);
    push_front(m, e);
  }
  pthread_mutex_unlock(&m->mu);
  return e != NULL;
}

void od_imgmemo_put(od_imgmemo *m, const uint8_t digest[32],
                    orfeas_pl_image *img) {
  memo_entry *e = m ? calloc(1, sizeof *e) : NULL;
  if (e == NULL) {
    if (img)
      orfeas_pl_image_free(img);
    return;
  }
  memcpy(e->digest, digest, 32);
  if (img != NULL) {
    e->img = *img;
    memset(img, 0, sizeof *img);
  }
  e->t_put = od_now();
  memo_entry *gone = NULL; /* freed outside the lock */
  pthread_mutex_lock(&m->mu);
  memo_entry *old = find(m, digest);
  if (old != NULL) { /* the newer entry replaces it */
    unlink_entry(m, old);
    m->bytes -= cost(old);
    old->next = gone;
    gone = old;
  }
  /* Room: entries without pixels (least recent first), then stale pixels,
   * then the new image's own pixels (the top says why). */
  for (int pass = 0; pass < 2 && m->bytes + cost(e) > m->bound; pass++)
    for (memo_entry *t = m->tail, *p; t && m->bytes + cost(e) > m->bound;
         t = p) {
      p = t->prev;
      if (pass == 0 ? holds(t) : e->t_put - t->t_put < PIXELS_TTL_S)
        continue;
      unlink_entry(m, t);
      m->bytes -= cost(t);
      t->next = gone;
      gone = t;
    }
  orfeas_pl_image unkept = {0}; /* the new pixels, when they do not fit */
  if (m->bytes + cost(e) > m->bound) {
    unkept = e->img;
    memset(&e->img, 0, sizeof e->img);
  }
  if (m->bytes + cost(e) <= m->bound) {
    push_front(m, e);
    m->bytes += cost(e);
    e = NULL;
  }
  pthread_mutex_unlock(&m->mu);
  orfeas_pl_image_free(&unkept);
  if (e != NULL)
    entry_free(e);
  while (gone) {
    memo_entry *n = gone->next;
    entry_free(gone);
    gone = n;
  }
}

void od_imgmemo_prepare(od_imgmemo *m, const uint8_t digest[32], int quality) {
  if (m == NULL)
    return;
  orfeas_pl_image px = {0};
  pthread_mutex_lock(&m->mu);
  memo_entry *e = find(m, digest);
  if (e != NULL && e->img.rgba != NULL) { /* out while the grid is made */
    m->bytes -= cost(e);
    px = e->img;
    memset(&e->img, 0, sizeof e->img);
    m->bytes += cost(e);
  }
  pthread_mutex_unlock(&m->mu);
  orfeas_pl_prepared *p = NULL;
  char msg[128];
  /* Out of memory: no grid, and the worker decodes the upload. */
  if (px.rgba != NULL)
    (void)orfeas_pl_prepare(&px, quality, &p, msg, sizeof msg);
  orfeas_pl_image_free(&px); /* the grid has what the run needs */
  if (p == NULL)
    return;
  pthread_mutex_lock(&m->mu);
  e = find(m, digest); /* it may have gone meanwhile */
  if (e != NULL && !holds(e) &&
      m->bytes + orfeas_pl_prepared_bytes(p) <= m->bound) {
    e->prep = p;
    m->bytes += orfeas_pl_prepared_bytes(p);
    p = NULL;
  }
  pthread_mutex_unlock(&m->mu);
  orfeas_pl_prepared_free(p);
}

int od_imgmemo_take(od_imgmemo *m, const uint8_t digest[32], int quality,
                    orfeas_pl_image *out, orfeas_pl_prepared **prep) {
  memset(out, 0, sizeof *out);
  *prep = NULL;
  if (m == NULL)
    return 0;
  pthread_mutex_lock(&m->mu);
  memo_entry *e = find(m, digest);
  /* A grid of another quality stays (another job of the same bytes may
   * want it; it goes as pixels do). */
  int grid = e != NULL && e->prep != NULL &&
             orfeas_pl_prepared_quality(e->prep) == quality;
  if (e != NULL && (grid || e->img.rgba != NULL)) {
    m->bytes -= cost(e);
    if (grid) {
      *prep = e->prep;
      e->prep = NULL;
    } else {
      *out = e->img;
      memset(&e->img, 0, sizeof e->img);
    }
    unlink_entry(m, e); /* still remembered as checked, and recently used */
    push_front(m, e);
    m->bytes += cost(e);
  }
  pthread_mutex_unlock(&m->mu);
  return out->rgba != NULL || *prep != NULL;
}

void od_imgmemo_stored(od_imgmemo *m, const uint8_t digest[32], const char *id,
                       const char *ext) {
  if (m == NULL)
    return;
  pthread_mutex_lock(&m->mu);
  memo_entry *e = find(m, digest);
  if (e != NULL)
    snprintf(e->upload, sizeof e->upload, "%.36s.%.7s", id, ext);
  pthread_mutex_unlock(&m->mu);
}

int od_imgmemo_stored_as(od_imgmemo *m, const uint8_t digest[32], char *name,
                         size_t len) {
  int found = 0;
  if (m == NULL)
    return 0;
  pthread_mutex_lock(&m->mu);
  memo_entry *e = find(m, digest);
  if (e != NULL && e->upload[0]) {
    snprintf(name, len, "%s", e->upload);
    found = 1;
  }
  pthread_mutex_unlock(&m->mu);
  return found;
}

size_t od_imgmemo_bytes(od_imgmemo *m) {
  if (m == NULL)
    return 0;
  pthread_mutex_lock(&m->mu);
  size_t n = m->bytes;
  pthread_mutex_unlock(&m->mu);
  return n;
}
