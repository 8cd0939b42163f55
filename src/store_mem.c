/* store_mem.c: the job store in this process's memory ("memory:").
 *
 * Records are kept by value in a slot array that grows by doubling up to
 * --max-jobs (so a large bound costs nothing until it is used), found by id
 * through a chained hash (bucket heads and per-slot links are slot indexes),
 * and threaded on a list in insertion (seq) order, so the oldest idle job is
 * found by walking past the active ones only: at most --queue-size +
 * --workers of them. Counts by state and stored bytes are kept as records
 * change, so stats() is O(1).
 *
 * One mutex guards the records; the dispatch queue (queue.c) has its own.
 * Lock order: records, then queue. claim() waits on the queue with the
 * record lock released.
 *
 * Nothing survives the process: recover() has nothing to settle. This is
 * the behaviour orfeasd had before the store existed, and the test double
 * the conformance suite (tests/unit/test_od_store.c) checks against the
 * same cases as every other backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define NIL (-1)

typedef struct {
  od_job_rec r;
  int32_t hnext;        /* next slot in the same bucket, or the free list */
  int32_t older, newer; /* seq-order list */
} slot;

typedef struct {
  pthread_mutex_t mu;
  slot *slots; /* owned; nslots in use or free */
  int32_t nslots, cap, max;
  int32_t *buckets; /* owned; nbuckets = power of two >= 2 * cap */
  uint32_t nbuckets;
  int32_t free_head;
  int32_t oldest, newest;
  uint64_t seq;
  od_store_stats st; /* by_state, jobs, bytes; queue fields filled on read */
  od_queue *q;       /* owned: the dispatch queue of job ids */
} mem;

static uint32_t hash_id(const char *id) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *id; id++)
    h = (h ^ (uint8_t)*id) * 16777619u;
  return h;
}

static int32_t *bucket(mem *m, const char *id) {
  return &m->buckets[hash_id(id) & (m->nbuckets - 1)];
}

static int32_t find(mem *m, const char *id) {
  for (int32_t i = *bucket(m, id); i != NIL; i = m->slots[i].hnext)
    if (strcmp(m->slots[i].r.id, id) == 0)
      return i;
  return NIL;
}

/* Rebuilds the buckets for nb heads from the live slots (seq list). */
static int rehash(mem *m, uint32_t nb) {
  int32_t *b = malloc(nb * sizeof *b);
  if (b == NULL)
    return -1;
  for (uint32_t i = 0; i < nb; i++)
    b[i] = NIL;
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = nb;
  for (int32_t i = m->oldest; i != NIL; i = m->slots[i].newer) {
    int32_t *h = bucket(m, m->slots[i].r.id);
    m->slots[i].hnext = *h;
    *h = i;
  }
  return 0;
}

/* A free slot index, growing the array when needed; NIL when max_jobs
 * records are held or memory is short. */
static int32_t take_slot(mem *m) {
  if (m->free_head != NIL) {
    int32_t i = m->free_head;
    m->free_head = m->slots[i].hnext;
    return i;
  }
  if (m->nslots == m->cap) {
    if (m->cap >= m->max)
      return NIL;
    int32_t ncap = m->cap > m->max / 2 ? m->max : m->cap * 2;
    slot *ns = realloc(m->slots, (size_t)ncap * sizeof *ns);
    if (ns == NULL)
      return NIL;
    m->slots = ns;
    m->cap = ncap;
    uint32_t nb = m->nbuckets;
    while (nb < 2u * (uint32_t)ncap)
      nb *= 2;
    if (nb != m->nbuckets)
      (void)rehash(m,
                   nb); /* on failure the old buckets stay valid, only fuller */
  }
  return m->nslots++;
}

static void unlink_slot(mem *m, int32_t i) {
  int32_t *h = bucket(m, m->slots[i].r.id);
  while (*h != i)
    h = &m->slots[*h].hnext;
  *h = m->slots[i].hnext;
  slot *s = &m->slots[i];
  if (s->older != NIL)
    m->slots[s->older].newer = s->newer;
  else
    m->oldest = s->newer;
  if (s->newer != NIL)
    m->slots[s->newer].older = s->older;
  else
    m->newest = s->older;
  s->hnext = m->free_head;
  m->free_head = i;
}

/* Stats bookkeeping: a record enters (+1) or leaves (-1) the counts. */
static void account(mem *m, const od_job_rec *r, int sign) {
  m->st.by_state[r->state] += sign;
  m->st.jobs += sign;
  if (sign > 0) {
    m->st.upload_bytes += r->upload_bytes;
    m->st.output_bytes += r->output_bytes;
  } else {
    m->st.upload_bytes -= r->upload_bytes;
    m->st.output_bytes -= r->output_bytes;
  }
}

static od_store_rc mem_open(const char *rest, const od_store_opts *o, void **be,
                            char *err, size_t err_len) {
  if (rest[0] != '\0') {
    snprintf(err, err_len, "the memory store takes no path (use \"memory:\")");
    return OD_STORE_DOWN;
  }
  if (o->max_jobs < 1 || o->queue_size < 1) {
    snprintf(err, err_len, "max_jobs and queue_size must be at least 1");
    return OD_STORE_DOWN;
  }
  mem *m = calloc(1, sizeof *m);
  if (m == NULL) {
    snprintf(err, err_len, "out of memory");
    return OD_STORE_DOWN;
  }
  m->max = o->max_jobs;
  m->cap = o->max_jobs < 1024 ? o->max_jobs : 1024;
  m->slots = malloc((size_t)m->cap * sizeof *m->slots);
  m->q = od_queue_new((size_t)o->queue_size);
  m->free_head = m->oldest = m->newest = NIL;
  uint32_t nb = 16;
  while (nb < 2u * (uint32_t)m->cap)
    nb *= 2;
  if (m->slots == NULL || m->q == NULL || rehash(m, nb) != 0) {
    free(m->slots);
    od_queue_free(m->q);
    free(m);
    snprintf(err, err_len, "out of memory");
    return OD_STORE_DOWN;
  }
  pthread_mutex_init(&m->mu, NULL);
  *be = m;
  return OD_STORE_OK;
}

static void mem_close(void *be) {
  mem *m = be;
  od_queue_free(m->q);
  free(m->buckets);
  free(m->slots);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static od_store_rc
mem_recover(void *be, void (*each)(const od_job_rec *r, void *u), void *u) {
  mem *m = be;
  /* Copied out first: each() runs with no store lock held. */
  pthread_mutex_lock(&m->mu);
  size_t n = (size_t)m->st.jobs, k = 0;
  od_job_rec *all = n ? malloc(n * sizeof *all) : NULL;
  if (all == NULL && n > 0) {
    pthread_mutex_unlock(&m->mu);
    return OD_STORE_DOWN;
  }
  for (int32_t i = m->oldest; i != NIL && k < n; i = m->slots[i].newer)
    all[k++] = m->slots[i].r;
  pthread_mutex_unlock(&m->mu);
  for (size_t i = 0; i < k && each; i++)
    each(&all[i], u);
  free(all);
  return OD_STORE_OK;
}

static od_store_rc mem_insert(void *be, od_job_rec *r) {
  mem *m = be;
  if (r->state != OD_JOB_UPLOADED)
    return OD_STORE_CONFLICT;
  pthread_mutex_lock(&m->mu);
  od_store_rc rc = OD_STORE_OK;
  int32_t i = NIL;
  if (find(m, r->id) != NIL)
    rc = OD_STORE_CONFLICT;
  else if ((i = take_slot(m)) == NIL)
    rc = OD_STORE_FULL;
  if (rc == OD_STORE_OK) {
    r->seq = ++m->seq;
    r->attempt = 0;
    r->owner[0] = '\0';
    slot *s = &m->slots[i];
    s->r = *r;
    int32_t *h = bucket(m, r->id);
    s->hnext = *h;
    *h = i;
    s->older = m->newest;
    s->newer = NIL;
    if (m->newest != NIL)
      m->slots[m->newest].newer = i;
    else
      m->oldest = i;
    m->newest = i;
    account(m, r, +1);
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

static od_store_rc mem_get(void *be, const char *id, od_job_rec *out) {
  mem *m = be;
  pthread_mutex_lock(&m->mu);
  int32_t i = find(m, id);
  if (i != NIL)
    *out = m->slots[i].r;
  pthread_mutex_unlock(&m->mu);
  return i != NIL ? OD_STORE_OK : OD_STORE_NOT_FOUND;
}

static od_store_rc mem_transition(void *be, const od_job_rec *next,
                                  unsigned from, int fence, od_job_rec *prev) {
  mem *m = be;
  if ((unsigned)next->state >= OD_JOB_STATE_COUNT)
    return OD_STORE_CONFLICT;
  pthread_mutex_lock(&m->mu);
  int32_t i = find(m, next->id);
  od_store_rc rc = OD_STORE_OK;
  if (i == NIL) {
    rc = OD_STORE_NOT_FOUND;
  } else {
    od_job_rec *cur = &m->slots[i].r;
    if (prev)
      *prev = *cur;
    if (!(from & OD_STATE_BIT(cur->state)))
      rc = OD_STORE_CONFLICT;
    else if (fence > 0 && cur->attempt != fence)
      rc = OD_STORE_FENCED;
    if (rc == OD_STORE_OK) {
      od_job_rec w = *next;
      /* Store-owned fields stay as stored (store.h). */
      memcpy(w.id, cur->id, sizeof w.id);
      w.seq = cur->seq;
      memcpy(w.ext, cur->ext, sizeof w.ext);
      memcpy(w.image_sha256, cur->image_sha256, sizeof w.image_sha256);
      w.upload_bytes = cur->upload_bytes;
      w.t_created = cur->t_created;
      w.attempt = cur->attempt;
      memcpy(w.owner, cur->owner, sizeof w.owner);
      account(m, cur, -1);
      *cur = w;
      account(m, cur, +1);
    }
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

static od_store_rc mem_enqueue(void *be, const char *id, int *position) {
  mem *m = be;
  pthread_mutex_lock(&m->mu);
  int32_t i = find(m, id);
  od_store_rc rc = OD_STORE_OK;
  if (i == NIL)
    rc = OD_STORE_NOT_FOUND;
  else if (m->slots[i].r.state != OD_JOB_QUEUED ||
           od_queue_position(m->q, id) >= 0)
    rc = OD_STORE_CONFLICT;
  if (rc == OD_STORE_OK) {
    int pos = od_queue_push(m->q, id);
    if (pos >= 0)
      *position = pos;
    else
      rc = pos == -2 ? OD_STORE_CLOSED : OD_STORE_FULL;
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

static od_store_rc mem_claim(void *be, const char *owner, int block_ms,
                             od_job_rec *out) {
  mem *m = be;
  char id[37];
  for (;;) {
    int got = od_queue_pop(m->q, id, block_ms);
    if (got != 0)
      return got < 0 ? OD_STORE_CLOSED : OD_STORE_EMPTY;
    pthread_mutex_lock(&m->mu);
    int32_t i = find(m, id);
    /* Only enqueue puts ids in the queue, and only for QUEUED records that
     * nothing else moves; the check keeps a bug from running a job twice. */
    if (i != NIL && m->slots[i].r.state == OD_JOB_QUEUED) {
      od_job_rec *r = &m->slots[i].r;
      account(m, r, -1);
      r->state = OD_JOB_PROCESSING;
      r->attempt++;
      r->tries++;
      r->t_started = od_wall();
      snprintf(r->owner, sizeof r->owner, "%s", owner ? owner : "");
      account(m, r, +1);
      *out = *r;
      pthread_mutex_unlock(&m->mu);
      return OD_STORE_OK;
    }
    pthread_mutex_unlock(&m->mu);
  }
}

static od_store_rc mem_position(void *be, const char *id, int *position) {
  mem *m = be;
  pthread_mutex_lock(&m->mu);
  int32_t i = find(m, id);
  if (i != NIL)
    *position =
        m->slots[i].r.state == OD_JOB_QUEUED ? od_queue_position(m->q, id) : -1;
  pthread_mutex_unlock(&m->mu);
  return i != NIL ? OD_STORE_OK : OD_STORE_NOT_FOUND;
}

static od_store_rc mem_evict(void *be, const char *id, od_job_rec *gone) {
  mem *m = be;
  pthread_mutex_lock(&m->mu);
  od_store_rc rc = OD_STORE_OK;
  int32_t i = NIL;
  if (id != NULL) {
    i = find(m, id);
    if (i == NIL)
      rc = OD_STORE_NOT_FOUND;
    else if (OD_STATE_BIT(m->slots[i].r.state) & OD_STATES_ACTIVE)
      rc = OD_STORE_CONFLICT;
  } else {
    i = m->oldest;
    while (i != NIL && (OD_STATE_BIT(m->slots[i].r.state) & OD_STATES_ACTIVE))
      i = m->slots[i].newer;
    if (i == NIL)
      rc = OD_STORE_EMPTY;
  }
  if (rc == OD_STORE_OK) {
    if (gone)
      *gone = m->slots[i].r;
    account(m, &m->slots[i].r, -1);
    unlink_slot(m, i);
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

static od_store_rc mem_stats(void *be, od_store_stats *st) {
  mem *m = be;
  pthread_mutex_lock(&m->mu);
  *st = m->st;
  st->queue_depth = (int64_t)od_queue_depth(m->q);
  st->oldest_queued_s = 0;
  char head[37];
  int32_t i;
  if (od_queue_peek(m->q, head) == 0 && (i = find(m, head)) != NIL) {
    double age = od_wall() - m->slots[i].r.t_queued;
    st->oldest_queued_s = age > 0 ? age : 0;
  }
  pthread_mutex_unlock(&m->mu);
  return OD_STORE_OK;
}

static void mem_close_queue(void *be, void (*each)(const char *id, void *u),
                            void *u) {
  mem *m = be;
  od_queue_close(m->q, each, u);
}

const od_store_ops od_store_memory_ops = {
    .scheme = "memory",
    .durable = 0,
    .open = mem_open,
    .close = mem_close,
    .recover = mem_recover,
    .insert = mem_insert,
    .get = mem_get,
    .transition = mem_transition,
    .enqueue = mem_enqueue,
    .claim = mem_claim,
    .position = mem_position,
    .evict = mem_evict,
    .stats = mem_stats,
    .close_queue = mem_close_queue,
};
