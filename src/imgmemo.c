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
 *
 * Bound: --image-memo-mb, counting the pixels plus 16 KiB per entry.
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
  orfeas_pl_image img; /* rgba NULL: checked only */
  struct memo_entry *prev, *next;
} memo_entry;

struct od_imgmemo {
  pthread_mutex_t mu;
  memo_entry *head, *tail; /* head: most recent */
  size_t bytes, bound;
};

static size_t cost(const memo_entry *e) {
  return ENTRY_COST +
         (e->img.rgba ? (size_t)e->img.width * e->img.height * 4 : 0);
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
    orfeas_pl_image_free(&e->img);
    free(e);
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
      if (pass == 0 ? t->img.rgba != NULL : e->t_put - t->t_put < PIXELS_TTL_S)
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
  if (e != NULL) {
    orfeas_pl_image_free(&e->img);
    free(e);
  }
  while (gone) {
    memo_entry *n = gone->next;
    orfeas_pl_image_free(&gone->img);
    free(gone);
    gone = n;
  }
}

int od_imgmemo_take(od_imgmemo *m, const uint8_t digest[32],
                    orfeas_pl_image *out) {
  memset(out, 0, sizeof *out);
  if (m == NULL)
    return 0;
  pthread_mutex_lock(&m->mu);
  memo_entry *e = find(m, digest);
  if (e != NULL && e->img.rgba != NULL) {
    m->bytes -= cost(e);
    *out = e->img;
    memset(&e->img, 0, sizeof e->img); /* still remembered as checked */
    unlink_entry(m, e);                /* and recently used */
    push_front(m, e);
    m->bytes += cost(e);
  }
  pthread_mutex_unlock(&m->mu);
  return out->rgba != NULL;
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
