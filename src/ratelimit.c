/* ratelimit.c: one token bucket per client address.
 *
 * The table is a fixed array of max_clients slots searched by a hash with
 * linear probing; when it is full the slot seen least recently among the
 * probed window is reused, so a flood of spoofed-looking addresses cannot
 * grow memory. A forgotten client just starts again with a full bucket,
 * which errs on the side of serving.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orfeasd.h"

#define KEY_LEN 48
#define PROBE 16

typedef struct {
  char key[KEY_LEN];
  double tokens;
  double last;
  int used;
} bucket;

struct od_ratelimit {
  pthread_mutex_t mu;
  double rate, burst;
  size_t n;
  bucket *slots; /* owned */
};

od_ratelimit *od_ratelimit_new(double rate, double burst, size_t max_clients) {
  if (rate <= 0 || burst < 1 || max_clients == 0)
    return NULL;
  od_ratelimit *rl = calloc(1, sizeof *rl);
  if (rl == NULL)
    return NULL;
  rl->slots = calloc(max_clients, sizeof *rl->slots);
  if (rl->slots == NULL) {
    free(rl);
    return NULL;
  }
  pthread_mutex_init(&rl->mu, NULL);
  rl->rate = rate;
  rl->burst = burst;
  rl->n = max_clients;
  return rl;
}

void od_ratelimit_free(od_ratelimit *rl) {
  if (rl == NULL)
    return;
  pthread_mutex_destroy(&rl->mu);
  free(rl->slots);
  free(rl);
}

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

int od_ratelimit_take(od_ratelimit *rl, const char *key, double now_s) {
  pthread_mutex_lock(&rl->mu);
  size_t start = (size_t)(hash(key) % rl->n);
  bucket *b = NULL, *oldest = NULL;
  for (size_t i = 0; i < PROBE && i < rl->n; i++) {
    bucket *s = &rl->slots[(start + i) % rl->n];
    if (s->used && strncmp(s->key, key, KEY_LEN - 1) == 0) {
      b = s;
      break;
    }
    if (!s->used) {
      if (oldest == NULL || oldest->used)
        oldest = s;
    } else if (oldest == NULL || (oldest->used && s->last < oldest->last)) {
      oldest = s;
    }
  }
  if (b == NULL && oldest == NULL) {
    pthread_mutex_unlock(&rl->mu);
    return 0; /* cannot happen (n >= 1); serve rather than refuse */
  }
  if (b == NULL) {
    b = oldest;
    memset(b, 0, sizeof *b);
    snprintf(b->key, sizeof b->key, "%s", key);
    b->used = 1;
    b->tokens = rl->burst;
    b->last = now_s;
  }
  /* Refill for the time since this client's last request. */
  if (now_s > b->last) {
    b->tokens = fmin(rl->burst, b->tokens + (now_s - b->last) * rl->rate);
    b->last = now_s;
  }
  int wait = 0;
  if (b->tokens >= 1) {
    b->tokens -= 1;
  } else {
    wait = (int)ceil((1 - b->tokens) / rl->rate);
    if (wait < 1)
      wait = 1;
  }
  pthread_mutex_unlock(&rl->mu);
  return wait;
}
