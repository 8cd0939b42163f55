/* queue.c: the bounded FIFO between the API and the worker pool.
 *
 * A ring of item pointers under one mutex and one condition variable. The
 * bound is what turns overload into an immediate 429 rather than unbounded
 * memory and latency. Closing hands every waiting item back to the caller
 * (who fails the job with a reason), so no accepted job is ever lost.
 */
#include <stdlib.h>

#include "orfeasd.h"

struct od_queue {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  void **ring; /* owned; items are not */
  size_t cap, head, len;
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
  q->cap = capacity;
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
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

int od_queue_push(od_queue *q, void *item) {
  pthread_mutex_lock(&q->mu);
  int pos = -1;
  if (!q->closed && q->len < q->cap) {
    q->ring[(q->head + q->len) % q->cap] = item;
    pos = (int)q->len++;
    pthread_cond_signal(&q->cv);
  }
  pthread_mutex_unlock(&q->mu);
  return pos;
}

void *od_queue_pop(od_queue *q) {
  pthread_mutex_lock(&q->mu);
  while (q->len == 0 && !q->closed)
    pthread_cond_wait(&q->cv, &q->mu);
  void *item = NULL;
  if (q->len > 0) {
    item = q->ring[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
  }
  pthread_mutex_unlock(&q->mu);
  return item;
}

void od_queue_close(od_queue *q, void (*drop)(void *item, void *user),
                    void *user) {
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  /* Take the items out under the lock, hand them back outside it, so drop()
   * may take other locks without an ordering problem. */
  size_t n = q->len;
  void **items = n ? malloc(n * sizeof *items) : NULL;
  if (items != NULL || n == 0) {
    for (size_t i = 0; i < n; i++)
      items[i] = q->ring[(q->head + i) % q->cap];
    q->len = 0;
  }
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  if (items == NULL && n > 0) {
    /* Out of memory: drop them one by one under no lock at all instead. */
    void *it;
    while ((it = od_queue_pop(q)) != NULL)
      if (drop)
        drop(it, user);
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (drop)
      drop(items[i], user);
  free(items);
}

size_t od_queue_depth(od_queue *q) {
  pthread_mutex_lock(&q->mu);
  size_t n = q->len;
  pthread_mutex_unlock(&q->mu);
  return n;
}

int od_queue_position(od_queue *q, const void *item) {
  pthread_mutex_lock(&q->mu);
  int pos = -1;
  for (size_t i = 0; i < q->len; i++)
    if (q->ring[(q->head + i) % q->cap] == item) {
      pos = (int)i;
      break;
    }
  pthread_mutex_unlock(&q->mu);
  return pos;
}
