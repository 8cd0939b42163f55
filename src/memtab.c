/* memtab.c: the in-memory job table (memtab.h says what it is for).
 *
 * Records are kept by value in a slot array that grows by doubling up to
 * max_jobs (so a large bound costs nothing until it is used), found by id
 * through a chained hash (bucket heads and per-slot links are slot
 * indexes), and threaded on two lists: every record in insertion (seq)
 * order (recover and od_memtab_all walk it), and the idle ones (uploaded,
 * completed, failed) in the order they last changed, so the job an evict
 * takes, the least recently changed idle one, is the head of that list
 * (passing over the few held ones), and the --result-ttl sweep stops at
 * the first job too recent.
 *
 * Tombstones live in a ring of at most max_jobs entries (oldest dropped
 * first) with their own hash; a removed one (its id inserted again) is
 * blanked in place and rotates out with the rest.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memtab.h"

#define NIL (-1)

typedef struct {
  int32_t prev, next; /* slot indexes, NIL at the ends */
} links;

typedef struct {
  int32_t head, tail; /* head: the oldest */
} list;

typedef struct {
  od_job_rec r;
  int32_t hnext;   /* next slot in the same bucket, or the free list */
  links seq, idle; /* seq order; last change, idle records only (an active
                      one is threaded on `active` by the same links) */
} slot;

#define SEQ offsetof(slot, seq)
#define IDLE offsetof(slot, idle)

typedef struct {
  char id[37]; /* "" once dropped */
  char reason[256];
  double t_gone;
  int32_t hnext;
} tomb;

typedef struct {
  int32_t *heads; /* owned; n = power of two */
  uint32_t n;
} hash;

struct od_memtab {
  pthread_mutex_t mu;
  slot *slots; /* owned; nslots in use or free */
  int32_t nslots, cap, max;
  hash h;
  int32_t free_head;
  list all, idle, active; /* active: queued and processing, any order */
  uint64_t seq;
  od_store_stats st; /* by_state, jobs, bytes, tombstones */
  tomb *tombs;       /* owned ring: tcap entries, tlen used from thead */
  int32_t tcap, tlen, thead;
  hash th;
  od_queue *q; /* owned: the dispatch queue of job ids */
};

static uint32_t hash_id(const char *id) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *id; id++)
    h = (h ^ (uint8_t)*id) * 16777619u;
  return h;
}

static int32_t *head_of(hash *h, const char *id) {
  return &h->heads[hash_id(id) & (h->n - 1)];
}

/* Fresh empty heads for at least 2 * entries buckets; -1 when out of
 * memory (the old heads are then kept). */
static int hash_reset(hash *h, int32_t entries) {
  uint32_t n = 16;
  while (n < 2u * (uint32_t)entries)
    n *= 2;
  int32_t *b = malloc(n * sizeof *b);
  if (b == NULL)
    return -1;
  for (uint32_t i = 0; i < n; i++)
    b[i] = NIL;
  free(h->heads);
  h->heads = b;
  h->n = n;
  return 0;
}

/* ---- lists --------------------------------------------------------------- */

static links *lk(od_memtab *t, int32_t i, size_t off) {
  return (links *)(void *)((char *)&t->slots[i] + off);
}

static void list_append(od_memtab *t, list *l, int32_t i, size_t off) {
  links *n = lk(t, i, off);
  n->prev = l->tail;
  n->next = NIL;
  if (l->tail != NIL)
    lk(t, l->tail, off)->next = i;
  else
    l->head = i;
  l->tail = i;
}

static void list_unlink(od_memtab *t, list *l, int32_t i, size_t off) {
  links *n = lk(t, i, off);
  if (n->prev != NIL)
    lk(t, n->prev, off)->next = n->next;
  else
    l->head = n->next;
  if (n->next != NIL)
    lk(t, n->next, off)->prev = n->prev;
  else
    l->tail = n->prev;
}

static int is_idle(const od_job_rec *r) {
  return !(OD_STATE_BIT(r->state) & OD_STATES_ACTIVE);
}

/* The list a record is threaded on by its `idle` links. */
static list *state_list(od_memtab *t, const od_job_rec *r) {
  return is_idle(r) ? &t->idle : &t->active;
}

/* When an idle record last changed: its end, or its upload. */
static double idle_since(const od_job_rec *r) {
  return r->t_ended > r->t_created ? r->t_ended : r->t_created;
}

/* ---- records ------------------------------------------------------------- */

static int32_t find(od_memtab *t, const char *id) {
  for (int32_t i = *head_of(&t->h, id); i != NIL; i = t->slots[i].hnext)
    if (strcmp(t->slots[i].r.id, id) == 0)
      return i;
  return NIL;
}

static void rehash_records(od_memtab *t) {
  for (int32_t i = t->all.head; i != NIL; i = t->slots[i].seq.next) {
    int32_t *h = head_of(&t->h, t->slots[i].r.id);
    t->slots[i].hnext = *h;
    *h = i;
  }
}

/* A free slot index, growing the array when needed; NIL when max_jobs
 * records are held or memory is short. */
static int32_t take_slot(od_memtab *t) {
  if (t->free_head != NIL) {
    int32_t i = t->free_head;
    t->free_head = t->slots[i].hnext;
    return i;
  }
  if (t->nslots == t->cap) {
    if (t->cap >= t->max)
      return NIL;
    int32_t ncap = t->cap > t->max / 2 ? t->max : t->cap * 2;
    slot *ns = realloc(t->slots, (size_t)ncap * sizeof *ns);
    if (ns == NULL)
      return NIL;
    t->slots = ns;
    t->cap = ncap;
    /* On failure the old buckets stay valid, only fuller. */
    if (2u * (uint32_t)ncap > t->h.n && hash_reset(&t->h, ncap) == 0)
      rehash_records(t);
  }
  return t->nslots++;
}

static void unlink_slot(od_memtab *t, int32_t i) {
  int32_t *h = head_of(&t->h, t->slots[i].r.id);
  while (*h != i)
    h = &t->slots[*h].hnext;
  *h = t->slots[i].hnext;
  list_unlink(t, &t->all, i, SEQ);
  list_unlink(t, state_list(t, &t->slots[i].r), i, IDLE);
  t->slots[i].hnext = t->free_head;
  t->free_head = i;
}

/* Stats bookkeeping: a record enters (+1) or leaves (-1) the counts. */
static void account(od_memtab *t, const od_job_rec *r, int sign) {
  t->st.by_state[r->state] += sign;
  t->st.jobs += sign;
  if (sign > 0) {
    t->st.upload_bytes += r->upload_bytes;
    t->st.output_bytes += r->output_bytes;
  } else {
    t->st.upload_bytes -= r->upload_bytes;
    t->st.output_bytes -= r->output_bytes;
  }
}

/* ---- tombstones ---------------------------------------------------------- */

static int32_t tomb_find(od_memtab *t, const char *id) {
  if (t->th.heads == NULL)
    return NIL;
  for (int32_t i = *head_of(&t->th, id); i != NIL; i = t->tombs[i].hnext)
    if (strcmp(t->tombs[i].id, id) == 0)
      return i;
  return NIL;
}

static void tomb_unhash(od_memtab *t, int32_t i) {
  int32_t *h = head_of(&t->th, t->tombs[i].id);
  while (*h != NIL && *h != i)
    h = &t->tombs[*h].hnext;
  if (*h == i)
    *h = t->tombs[i].hnext;
  t->tombs[i].id[0] = '\0';
  t->st.tombstones--;
}

static void tomb_drop(od_memtab *t, const char *id) {
  int32_t i = tomb_find(t, id);
  if (i != NIL)
    tomb_unhash(t, i);
}

/* Grows the ring (doubling, up to max_jobs, unrolled so it starts at 0);
 * -1 when it is at its bound or memory is short. */
static int tomb_grow(od_memtab *t) {
  if (t->tcap >= t->max)
    return -1;
  int32_t ncap = t->tcap == 0 ? 64 : t->tcap * 2;
  if (ncap > t->max)
    ncap = t->max;
  tomb *nt = malloc((size_t)ncap * sizeof *nt);
  if (nt == NULL)
    return -1;
  for (int32_t k = 0; k < t->tlen; k++)
    nt[k] = t->tombs[(t->thead + k) % t->tcap];
  hash fresh = {0};
  if (hash_reset(&fresh, ncap) != 0) {
    free(nt);
    return -1;
  }
  free(t->tombs);
  free(t->th.heads);
  t->tombs = nt;
  t->th = fresh;
  t->tcap = ncap;
  t->thead = 0;
  for (int32_t k = 0; k < t->tlen; k++)
    if (nt[k].id[0]) {
      int32_t *h = head_of(&t->th, nt[k].id);
      nt[k].hnext = *h;
      *h = k;
    }
  return 0;
}

void od_memtab_bury(od_memtab *t, const char *id, const char *reason,
                    double t_gone) {
  tomb_drop(t, id);
  if (t->tlen == t->tcap && tomb_grow(t) != 0) {
    if (t->tlen == 0)
      return; /* out of memory before the first: no tombstones */
    /* Full: the oldest goes. */
    if (t->tombs[t->thead].id[0])
      tomb_unhash(t, t->thead);
    t->thead = (t->thead + 1) % t->tcap;
    t->tlen--;
  }
  int32_t i = (t->thead + t->tlen) % t->tcap;
  tomb *e = &t->tombs[i];
  snprintf(e->id, sizeof e->id, "%s", id);
  snprintf(e->reason, sizeof e->reason, "%s", reason);
  e->t_gone = t_gone;
  int32_t *h = head_of(&t->th, id);
  e->hnext = *h;
  *h = i;
  t->tlen++;
  t->st.tombstones++;
}

/* ---- the table ----------------------------------------------------------- */

od_memtab *od_memtab_new(const od_store_opts *o, char *err, size_t err_len) {
  if (o->max_jobs < 1 || o->queue_size < 1) {
    snprintf(err, err_len, "max_jobs and queue_size must be at least 1");
    return NULL;
  }
  od_memtab *t = calloc(1, sizeof *t);
  if (t == NULL) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  t->max = o->max_jobs;
  t->cap = o->max_jobs < 1024 ? o->max_jobs : 1024;
  t->slots = malloc((size_t)t->cap * sizeof *t->slots);
  t->q = od_queue_new((size_t)o->queue_size);
  t->free_head = NIL;
  t->all = t->idle = t->active = (list){NIL, NIL};
  if (t->slots == NULL || t->q == NULL || hash_reset(&t->h, t->cap) != 0) {
    free(t->slots);
    od_queue_free(t->q);
    free(t->h.heads);
    free(t);
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&t->mu, NULL);
  return t;
}

void od_memtab_free(od_memtab *t) {
  if (t == NULL)
    return;
  od_queue_free(t->q);
  free(t->h.heads);
  free(t->th.heads);
  free(t->slots);
  free(t->tombs);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

void od_memtab_lock(od_memtab *t) { pthread_mutex_lock(&t->mu); }
void od_memtab_unlock(od_memtab *t) { pthread_mutex_unlock(&t->mu); }
od_queue *od_memtab_queue(od_memtab *t) { return t->q; }

od_job_rec *od_memtab_find(od_memtab *t, const char *id) {
  int32_t i = find(t, id);
  return i != NIL ? &t->slots[i].r : NULL;
}

od_store_rc od_memtab_get(od_memtab *t, const char *id, od_job_rec *out) {
  int32_t i = find(t, id);
  if (i != NIL) {
    *out = t->slots[i].r;
    return OD_STORE_OK;
  }
  if ((i = tomb_find(t, id)) == NIL)
    return OD_STORE_NOT_FOUND;
  memset(out, 0, sizeof *out);
  snprintf(out->id, sizeof out->id, "%s", id);
  snprintf(out->error, sizeof out->error, "%s", t->tombs[i].reason);
  out->t_ended = t->tombs[i].t_gone;
  return OD_STORE_GONE;
}

od_store_rc od_memtab_add(od_memtab *t, od_job_rec *r, int keep_seq) {
  if (find(t, r->id) != NIL)
    return OD_STORE_CONFLICT;
  int32_t i = take_slot(t);
  if (i == NIL)
    return OD_STORE_FULL;
  if (!keep_seq) {
    r->seq = ++t->seq;
    r->attempt = 0;
    r->owner[0] = '\0';
  } else if (r->seq > t->seq) {
    t->seq = r->seq;
  }
  tomb_drop(t, r->id);
  slot *s = &t->slots[i];
  s->r = *r;
  int32_t *h = head_of(&t->h, r->id);
  s->hnext = *h;
  *h = i;
  list_append(t, &t->all, i, SEQ);
  list_append(t, state_list(t, r), i, IDLE);
  account(t, r, +1);
  return OD_STORE_OK;
}

od_store_rc od_memtab_check(od_memtab *t, const od_job_rec *next, unsigned from,
                            int fence, od_job_rec *prev, od_job_rec *w) {
  if ((unsigned)next->state >= OD_JOB_STATE_COUNT)
    return OD_STORE_CONFLICT;
  int32_t i = find(t, next->id);
  if (i == NIL)
    return OD_STORE_NOT_FOUND;
  const od_job_rec *cur = &t->slots[i].r;
  if (prev)
    *prev = *cur;
  /* The attempt first: a superseded run is refused as such (FENCED) even
   * once the newer attempt has ended, not as a busy job. */
  if (fence > 0 && cur->attempt != fence)
    return OD_STORE_FENCED;
  if (!(from & OD_STATE_BIT(cur->state)))
    return OD_STORE_CONFLICT;
  *w = *next;
  /* Store-owned fields stay as stored (store.h). */
  memcpy(w->id, cur->id, sizeof w->id);
  w->seq = cur->seq;
  memcpy(w->ext, cur->ext, sizeof w->ext);
  memcpy(w->image_sha256, cur->image_sha256, sizeof w->image_sha256);
  w->upload_bytes = cur->upload_bytes;
  w->t_created = cur->t_created;
  w->attempt = cur->attempt;
  memcpy(w->owner, cur->owner, sizeof w->owner);
  return OD_STORE_OK;
}

void od_memtab_put(od_memtab *t, const od_job_rec *w) {
  int32_t i = find(t, w->id);
  if (i == NIL)
    return;
  /* An idle record that changes goes to the idle list's tail. */
  list_unlink(t, state_list(t, &t->slots[i].r), i, IDLE);
  list_append(t, state_list(t, w), i, IDLE);
  account(t, &t->slots[i].r, -1);
  t->slots[i].r = *w;
  account(t, w, +1);
}

void od_memtab_released(od_memtab *t, od_job_state was, const od_job_rec *w) {
  /* Out of memory growing the ring: the job waits for the next start, as a
   * closed queue's would. */
  if (was == OD_JOB_PROCESSING && w->state == OD_JOB_QUEUED)
    (void)od_queue_push_over(t->q, w->id, 1);
}

od_store_rc od_memtab_claim_rec(od_memtab *t, const char *id, const char *owner,
                                double now, od_job_rec *w) {
  int32_t i = find(t, id);
  /* Only enqueue puts ids in the queue, and only for QUEUED records that
   * nothing else moves; the check keeps a bug from running a job twice. */
  if (i == NIL || t->slots[i].r.state != OD_JOB_QUEUED)
    return OD_STORE_NOT_FOUND;
  *w = t->slots[i].r;
  w->state = OD_JOB_PROCESSING;
  w->attempt++;
  w->tries++;
  w->t_started = now;
  snprintf(w->owner, sizeof w->owner, "%s", owner ? owner : "");
  return OD_STORE_OK;
}

od_store_rc od_memtab_pick(od_memtab *t, const od_evict_sel *sel, double now,
                           od_job_rec *victim) {
  int32_t i;
  if (sel->id != NULL) {
    if ((i = find(t, sel->id)) == NIL)
      return OD_STORE_NOT_FOUND;
    if (OD_STATE_BIT(t->slots[i].r.state) & OD_STATES_ACTIVE)
      return OD_STORE_CONFLICT;
  } else {
    for (i = t->idle.head; i != NIL; i = t->slots[i].idle.next) {
      const od_job_rec *r = &t->slots[i].r;
      if (r->hold_until > now)
        continue;
      if (sel->idle_before <= 0 || idle_since(r) < sel->idle_before)
        break;
      /* Too recent: the rest changed later still, but for a job given
       * back after a refused generate (its old t_ended at the tail): it
       * is then kept a little longer, never removed early. */
      i = NIL;
      break;
    }
    if (i == NIL)
      return OD_STORE_EMPTY;
  }
  *victim = t->slots[i].r;
  return OD_STORE_OK;
}

void od_memtab_remove(od_memtab *t, const char *id, const char *reason,
                      double t_gone) {
  int32_t i = find(t, id);
  if (i == NIL)
    return;
  account(t, &t->slots[i].r, -1);
  unlink_slot(t, i);
  if (reason != NULL)
    od_memtab_bury(t, id, reason, t_gone);
}

void od_memtab_stats(od_memtab *t, od_store_stats *st) {
  *st = t->st;
  st->queue_depth = (int64_t)od_queue_depth(t->q);
  st->oldest_queued_s = 0;
  char head[37];
  int32_t i;
  if (od_queue_peek(t->q, head) == 0 && (i = find(t, head)) != NIL) {
    double age = od_wall() - t->slots[i].r.t_queued;
    st->oldest_queued_s = age > 0 ? age : 0;
  }
}

od_job_rec *od_memtab_all(od_memtab *t, size_t *n) {
  *n = (size_t)t->st.jobs;
  if (*n == 0)
    return NULL;
  od_job_rec *all = malloc(*n * sizeof *all);
  if (all == NULL)
    return NULL;
  size_t k = 0;
  for (int32_t i = t->all.head; i != NIL && k < *n; i = t->slots[i].seq.next)
    all[k++] = t->slots[i].r;
  *n = k;
  return all;
}

/* ---- whole calls --------------------------------------------------------- */

/* The table of a backend state that starts with it (memtab.h). */
static od_memtab *table_of(void *be) { return *(od_memtab **)be; }

od_store_rc od_memtab_call_get(void *be, const char *id, od_job_rec *out) {
  od_memtab *t = table_of(be);
  od_memtab_lock(t);
  od_store_rc rc = od_memtab_get(t, id, out);
  od_memtab_unlock(t);
  return rc;
}

od_store_rc od_memtab_call_enqueue(void *be, const char *id, int *position) {
  od_memtab *t = table_of(be);
  od_memtab_lock(t);
  int32_t i = find(t, id);
  od_store_rc rc = OD_STORE_OK;
  if (i == NIL)
    rc = OD_STORE_NOT_FOUND;
  else if (t->slots[i].r.state != OD_JOB_QUEUED ||
           od_queue_position(t->q, id) >= 0)
    rc = OD_STORE_CONFLICT;
  if (rc == OD_STORE_OK) {
    int pos = od_queue_push(t->q, id);
    if (pos >= 0)
      *position = pos;
    else
      rc = pos == -2 ? OD_STORE_CLOSED : OD_STORE_FULL;
  }
  od_memtab_unlock(t);
  return rc;
}

od_store_rc od_memtab_call_position(void *be, const char *id, int *position) {
  od_memtab *t = table_of(be);
  od_memtab_lock(t);
  int32_t i = find(t, id);
  if (i != NIL)
    *position =
        t->slots[i].r.state == OD_JOB_QUEUED ? od_queue_position(t->q, id) : -1;
  od_memtab_unlock(t);
  return i != NIL ? OD_STORE_OK : OD_STORE_NOT_FOUND;
}

od_store_rc od_memtab_call_stats(void *be, od_store_stats *st) {
  od_memtab *t = table_of(be);
  od_memtab_lock(t);
  od_memtab_stats(t, st);
  od_memtab_unlock(t);
  return OD_STORE_OK;
}

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

/* The old QUEUED records are found on the active list (queued and running
 * jobs: --queue-size and the workers, not the whole table) under the
 * table's lock; whether each waits in the queue is then looked up in a
 * sorted copy of the queue's ids. */
od_store_rc od_memtab_call_requeue_stranded(void *be, double before, int *n) {
  od_memtab *t = table_of(be);
  *n = 0;
  od_memtab_lock(t);
  size_t cap = (size_t)t->st.by_state[OD_JOB_QUEUED], k = 0;
  char(*old)[37] = cap ? malloc(cap * sizeof *old) : NULL;
  for (int32_t i = t->active.head; old && i != NIL && k < cap;
       i = t->slots[i].idle.next) {
    const od_job_rec *r = &t->slots[i].r;
    if (r->state == OD_JOB_QUEUED && r->t_queued < before)
      memcpy(old[k++], r->id, sizeof old[0]);
  }
  od_memtab_unlock(t);
  char *waiting = NULL;
  size_t nw = 0;
  if ((cap && old == NULL) || (k && od_queue_ids(t->q, &waiting, &nw) != 0)) {
    free(old);
    return OD_STORE_DOWN; /* out of memory: the next sweep tries again */
  }
  if (nw)
    qsort(waiting, nw, 37, cmp_id);
  od_store_rc rc = OD_STORE_OK;
  for (size_t i = 0; i < k && rc == OD_STORE_OK; i++) {
    if (nw && bsearch(old[i], waiting, nw, 37, cmp_id) != NULL)
      continue;
    int p = od_queue_push_over(t->q, old[i], 0);
    if (p == 0)
      (*n)++;
    else
      rc = p == -2 ? OD_STORE_CLOSED : OD_STORE_DOWN;
  }
  free(waiting);
  free(old);
  return rc;
}

void od_memtab_call_close_queue(void *be, void (*each)(const char *id, void *u),
                                void *u) {
  od_queue_close(table_of(be)->q, each, u);
}

/* ---- loading --------------------------------------------------------------
 */

static const od_memtab *sort_t; /* for by_idle_since (under the table lock) */

static int by_idle_since(const void *a, const void *b) {
  const od_job_rec *x = &sort_t->slots[*(const int32_t *)a].r;
  const od_job_rec *y = &sort_t->slots[*(const int32_t *)b].r;
  double p = idle_since(x), q = idle_since(y);
  if (p != q)
    return p < q ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int od_memtab_sort_idle(od_memtab *t) {
  size_t n = 0;
  for (int32_t i = t->idle.head; i != NIL; i = t->slots[i].idle.next)
    n++;
  if (n < 2)
    return 0;
  int32_t *v = malloc(n * sizeof *v);
  if (v == NULL)
    return -1;
  size_t k = 0;
  for (int32_t i = t->idle.head; i != NIL; i = t->slots[i].idle.next)
    v[k++] = i;
  sort_t = t;
  qsort(v, n, sizeof *v, by_idle_since);
  t->idle = (list){NIL, NIL};
  for (k = 0; k < n; k++)
    list_append(t, &t->idle, v[k], IDLE);
  free(v);
  return 0;
}
