/* store_mem.c: the job store in this process's memory ("memory:").
 *
 * The in-memory table (memtab.c) and nothing else: every call is one
 * critical section of the table's mutex, except claim, which waits on the
 * dispatch queue with no lock held, then takes the table's.
 *
 * Nothing survives the process: recover() has nothing to settle. This is
 * the behaviour orfeasd had before the store existed, the bench's baseline
 * (store_overhead), and the test double the conformance suite
 * (tests/unit/test_od_store.c) checks against the same cases as every
 * other backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memtab.h"

typedef struct {
  od_memtab *t; /* owned; first, for the od_memtab_call_* functions */
} mem;

static od_store_rc mem_open(const char *rest, const od_store_opts *o, void **be,
                            char *err, size_t err_len) {
  if (rest[0] != '\0') {
    snprintf(err, err_len, "the memory store takes no path (use \"memory:\")");
    return OD_STORE_DOWN;
  }
  mem *m = calloc(1, sizeof *m);
  if (m == NULL) {
    snprintf(err, err_len, "out of memory");
    return OD_STORE_DOWN;
  }
  if ((m->t = od_memtab_new(o, err, err_len)) == NULL) {
    free(m);
    return OD_STORE_DOWN;
  }
  *be = m;
  return OD_STORE_OK;
}

static void mem_close(void *be) {
  mem *m = be;
  od_memtab_free(m->t);
  free(m);
}

static od_store_rc mem_recover(void *be,
                               void (*each)(const od_job_rec *r,
                                            od_job_state was, void *u),
                               void *u) {
  od_memtab *t = ((mem *)be)->t;
  /* Copied out first: each() runs with no store lock held. */
  od_memtab_lock(t);
  size_t n = 0;
  od_job_rec *all = od_memtab_all(t, &n);
  od_memtab_unlock(t);
  if (all == NULL && n > 0)
    return OD_STORE_DOWN;
  for (size_t i = 0; i < n && each; i++)
    each(&all[i], all[i].state, u);
  free(all);
  return OD_STORE_OK;
}

static od_store_rc mem_insert(void *be, od_job_rec *r) {
  od_memtab *t = ((mem *)be)->t;
  if (r->state != OD_JOB_UPLOADED)
    return OD_STORE_CONFLICT;
  od_memtab_lock(t);
  od_store_rc rc = od_memtab_add(t, r, 0);
  od_memtab_unlock(t);
  return rc;
}

static od_store_rc mem_transition(void *be, const od_job_rec *next,
                                  unsigned from, int fence, od_job_rec *prev) {
  od_memtab *t = ((mem *)be)->t;
  od_job_rec w, mine, *was = prev ? prev : &mine; /* the record before */
  od_memtab_lock(t);
  od_store_rc rc = od_memtab_check(t, next, from, fence, was, &w);
  if (rc == OD_STORE_OK)
    od_memtab_put(t, &w);
  od_memtab_unlock(t);
  if (rc == OD_STORE_OK)
    od_memtab_released(t, was->state, &w);
  return rc;
}

static od_store_rc mem_claim(void *be, const char *owner, int block_ms,
                             od_job_rec *out) {
  od_memtab *t = ((mem *)be)->t;
  char id[37];
  for (;;) {
    int got = od_queue_pop(od_memtab_queue(t), id, block_ms);
    if (got != 0)
      return got < 0 ? OD_STORE_CLOSED : OD_STORE_EMPTY;
    od_memtab_lock(t);
    od_store_rc rc = od_memtab_claim_rec(t, id, owner, od_wall(), out);
    if (rc == OD_STORE_OK)
      od_memtab_put(t, out);
    od_memtab_unlock(t);
    if (rc == OD_STORE_OK)
      return rc;
  }
}

static od_store_rc mem_evict(void *be, const od_evict_sel *sel,
                             od_job_rec *gone) {
  od_memtab *t = ((mem *)be)->t;
  od_job_rec v;
  double now = od_wall();
  od_memtab_lock(t);
  od_store_rc rc = od_memtab_pick(t, sel, now, &v);
  if (rc == OD_STORE_OK) {
    od_memtab_remove(t, v.id, sel->reason, now);
    if (gone)
      *gone = v;
  }
  od_memtab_unlock(t);
  return rc;
}

const od_store_ops od_store_memory_ops = {
    .scheme = "memory",
    .durable = 0,
    .open = mem_open,
    .close = mem_close,
    .recover = mem_recover,
    .insert = mem_insert,
    .get = od_memtab_call_get,
    .transition = mem_transition,
    .enqueue = od_memtab_call_enqueue,
    .claim = mem_claim,
    .position = od_memtab_call_position,
    .requeue_stranded = od_memtab_call_requeue_stranded,
    .evict = mem_evict,
    .stats = od_memtab_call_stats,
    .close_queue = od_memtab_call_close_queue,
    .ping = NULL,
};
