/* queue.c: the bounded FIFO between the API and the worker pool.
 *
 * A ring of job ids (copied in, 37 bytes each) under one mutex and one
 * condition variable. Ids, not pointers: the queue then means the same thing
 * to a store whose records live elsewhere (store.h), and a position is a
 * place in line, not an address. The bound is what turns overload into an
 * immediate 429 rather than unbounded memory and latency. Closing hands every
 * waiting id back to the caller (who decides what becomes of the job), so no
 * accepted job is ever silently lost.
 *
 * Position and membership are found by a linear scan of the ring: the queue
 * is short (--queue-size, default 100) and scanned only by job-status. The
 * janitor's look for stranded jobs takes a copy of all ids (od_queue_ids)
 * once per pass instead of asking per job.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orfeasd.h"

typedef struct {
  char id[37];
} slot;

struct od_queue {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* on CLOCK_MONOTONIC, for timed pops */
  slot *ring;        /* owned; cap slots, >= bound */
  size_t cap, head, len;
  size_t bound; /* what od_queue_push accepts; od_queue_push_over
                   may go past it (the ring grows) */
  int closed;
};

od_queue *od_queue_new(size_t capacity) {
  if (capacity == 0)
    return NULL;
  od_queue *q = calloc(1, sizeof *q);
  if (q == NULL)
    return NULL;
  q->ring = calloc(capacity, sizeof *q->ring);
  if (q->ring == NULL) {
    free(q);
    return NULL;
  }
  q->cap = q->bound = capacity;
  pthread_mutex_init(&q->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&q->cv, &ca);
  pthread_condattr_destroy(&ca);
  return q;
}

void od_queue_free(od_queue *q) {
  if (q == NULL)
    return;
  pthread_cond_destroy(&q->cv);
  pthread_mutex_destroy(&q->mu);
  free(q->ring);
  free(q);
}

int od_queue_push(od_queue *q, const char *id) {
  pthread_mutex_lock(&q->mu);
  int pos = q->closed ? -2 : -1;
  if (!q->closed && q->len < q->bound) {
    snprintf(q->ring[(q->head + q->len) % q->cap].id, sizeof q->ring[0].id,
             "%s", id);
    pos = (int)q->len++;
    pthread_cond_signal(&q->cv);
  }
  pthread_mutex_unlock(&q->mu);
  return pos;
}

/* Makes room for one more id past the bound (the ring doubles); 0, or -1
 * when out of memory. Called with the lock held. */
static int grow(od_queue *q) {
  if (q->len < q->cap)
    return 0;
  size_t ncap = q->cap * 2;
  slot *r = malloc(ncap * sizeof *r);
  if (r == NULL)
    return -1;
  for (size_t i = 0; i < q->len; i++)
    r[i] = q->ring[(q->head + i) % q->cap];
  free(q->ring);
  q->ring = r;
  q->cap = ncap;
  q->head = 0;
  return 0;
}

int od_queue_push_over(od_queue *q, const char *id, int front) {
  pthread_mutex_lock(&q->mu);
  int rc = q->closed ? -2 : grow(q);
  if (rc == 0) {
    if (front) {
      q->head = (q->head + q->cap - 1) % q->cap;
      snprintf(q->ring[q->head].id, sizeof q->ring[0].id, "%s", id);
    } else {
      snprintf(q->ring[(q->head + q->len) % q->cap].id, sizeof q->ring[0].id,
               "%s", id);
    }
    q->len++;
    pthread_cond_signal(&q->cv);
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}

/* The absolute CLOCK_MONOTONIC deadline timeout_ms from now. */
static struct timespec deadline(int timeout_ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += timeout_ms / 1000;
  ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

int od_queue_pop(od_queue *q, char id[37], int timeout_ms) {
  struct timespec until = deadline(timeout_ms > 0 ? timeout_ms : 0);
  pthread_mutex_lock(&q->mu);
  while (q->len == 0 && !q->closed && timeout_ms != 0) {
    if (timeout_ms < 0)
      pthread_cond_wait(&q->cv, &q->mu);
    else if (pthread_cond_timedwait(&q->cv, &q->mu, &until) == ETIMEDOUT)
      break;
  }
  int rc = q->closed ? -1 : 1;
  if (q->len > 0) {
    memcpy(id, q->ring[q->head].id, 37);
    q->head = (q->head + 1) % q->cap;
    q->len--;
    rc = 0;
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}

void od_queue_close(od_queue *q, void (*drop)(const char *id, void *user),
                    void *user) {
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  /* Take the ids out under the lock, hand them back outside it, so drop()
   * may take other locks without an ordering problem. */
  size_t n = q->len;
  slot *items = n ? malloc(n * sizeof *items) : NULL;
  if (items != NULL || n == 0) {
    for (size_t i = 0; i < n; i++)
      items[i] = q->ring[(q->head + i) % q->cap];
    q->len = 0;
  }
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  if (items == NULL && n > 0) {
    /* Out of memory: hand them back one by one instead (FIFO all the same). */
    char id[37];
    while (od_queue_pop(q, id, 0) == 0)
      if (drop)
        drop(id, user);
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (drop)
      drop(items[i].id, user);
  free(items);
}

size_t od_queue_depth(od_queue *q) {
  pthread_mutex_lock(&q->mu);
  size_t n = q->len;
  pthread_mutex_unlock(&q->mu);
  return n;
}

int od_queue_position(od_queue *q, const char *id) {
  pthread_mutex_lock(&q->mu);
  int pos = -1;
  for (size_t i = 0; i < q->len; i++)
    if (strcmp(q->ring[(q->head + i) % q->cap].id, id) == 0) {
      pos = (int)i;
      break;
    }
  pthread_mutex_unlock(&q->mu);
  return pos;
}

int od_queue_ids(od_queue *q, char **ids, size_t *n) {
  pthread_mutex_lock(&q->mu);
  *n = q->len;
  *ids = q->len ? malloc(q->len * sizeof(slot)) : NULL;
  for (size_t i = 0; *ids && i < q->len; i++)
    memcpy(*ids + i * sizeof(slot), q->ring[(q->head + i) % q->cap].id,
           sizeof(slot));
  pthread_mutex_unlock(&q->mu);
  if (*n && *ids == NULL) {
    *n = 0;
    return -1;
  }
  return 0;
}

int od_queue_peek(od_queue *q, char id[37]) {
  pthread_mutex_lock(&q->mu);
  int rc = -1;
  if (q->len > 0) {
    memcpy(id, q->ring[q->head].id, 37);
    rc = 0;
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}
