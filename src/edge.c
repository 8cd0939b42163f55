/* edge.c: the HTTP connection edge: how long a client may take to send a
 * request, how many connections one address may hold, and how many body
 * bytes may be in flight at once.
 *
 * libmicrohttpd 0.9.75 calls the access handler only once a request's
 * headers are complete, and its idle timeout is renewed by every byte, so a
 * client that trickles a header byte now and then holds its connection (and
 * a slot under --max-connections) for as long as it likes. The edge keeps a
 * table of the open connections (MHD's NOTIFY_CONNECTION STARTED/CLOSED)
 * with what each is doing:
 *
 *   HEADERS  waiting for a request's headers: since the connection opened,
 *            or since its previous request completed (keep-alive);
 *   BODY     receiving a request body;
 *   BUSY     being answered, or upgraded to a WebSocket (the hub's then).
 *
 * A sweeper thread walks the table a few times per --header-timeout and
 * shuts down (shutdown(2): MHD then sees the end of the stream and closes
 * the connection the usual way, completion callback included) a connection
 * that has waited in HEADERS longer than --header-timeout, or that received
 * less than --body-min-rate bytes/s over a BODY window of --header-timeout
 * seconds. Each cut is counted by reason in
 * orfeas_http_connections_closed_total.
 *
 * fd reuse: the sweeper calls shutdown() with the table lock held, and a
 * connection leaves the table in MHD's CLOSED notification, under the same
 * lock, before MHD closes its socket (MHD notifies, then closes). So an fd
 * found in the table is always that connection's own socket.
 *
 * Per-address limit: MHD's accept-policy callback sees the peer before a
 * connection is set up. The table counts open public connections per IPv4
 * address (open addressing, sized for every connection MHD may hold, so it
 * never fills) and refuses an accept past --max-conns-per-address, counted.
 * The check at accept and the count when MHD reports the connection STARTED
 * are two steps, and two HTTP threads may pass the first at once for one
 * address: the second step checks again under the lock, and a connection
 * over the limit there is shut down at once (counted the same way).
 * Trusted proxies (--trusted-proxies) are exempt: every client behind them
 * shares their address.
 *
 * Body budget: a request reserves its declared Content-Length (a chunked
 * one, what arrives) from --max-body-inflight-mb before its body is read,
 * and gives it back when it completes; past the budget it gets 503. One
 * address may hold --max-body-inflight-per-address-mb of it (the same
 * table counts its reserved bytes): else a few uploads that declare the
 * largest length and trickle just above --body-min-rate, which never cuts
 * them, hold the whole budget, and every other client's upload gets 503
 * for as long as they trickle (hours at the default sizes).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "orfeasd.h"

struct od_conn {
  od_conn *prev, *next; /* in the edge's list, under mu */
  int fd;
  uint32_t addr; /* IPv4, host order; 0 = not counted per address */
  int admin;
  od_conn_phase phase;         /* under mu */
  double t_phase;              /* when the phase (or the body window) began */
  _Atomic uint64_t body_bytes; /* received in the current body window */
  int cut;                     /* the sweeper shut it down */
  int late;                    /* public, opened while draining */
  uint64_t body;               /* reserved from its address's share, under mu */
};

/* Open connections per address: open addressing with linear probing; a
 * slot with count 0 is empty (backward-shift deletion keeps probes
 * unbroken). */
typedef struct {
  uint32_t addr;
  uint32_t count;
  uint64_t body; /* body bytes its requests reserved */
} addr_slot;

struct od_edge {
  od_service *svc;
  pthread_mutex_t mu;
  pthread_cond_t wake;
  od_conn *head; /* every open connection */
  addr_slot *slots;
  size_t nslots; /* a power of two */
  int stop, started;
  pthread_t sweeper;
  _Atomic uint64_t body_inflight; /* reserved body bytes */
  uint64_t body_budget;
  _Atomic uint64_t body_memory; /* upload bodies held in memory */
  uint64_t memory_budget;       /* --body-memory-mb */
  uint64_t addr_budget; /* --max-body-inflight-per-address-mb; 0 = off */
  double header_timeout;
  double min_rate;
};

/* ---- per-address table -----------------------------------------------------
 */

static size_t slot_of(const od_edge *e, uint32_t addr) {
  uint64_t h = (uint64_t)addr * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 32) & (e->nslots - 1);
}

/* The slot holding addr, or the empty slot where it would go. */
static addr_slot *addr_find(od_edge *e, uint32_t addr) {
  size_t i = slot_of(e, addr);
  for (size_t n = 0; n < e->nslots; n++, i = (i + 1) & (e->nslots - 1))
    if (e->slots[i].count == 0 || e->slots[i].addr == addr)
      return &e->slots[i];
  return NULL; /* cannot happen: the table is twice the connection limit */
}

static void addr_remove(od_edge *e, addr_slot *s) {
  size_t mask = e->nslots - 1;
  size_t hole = (size_t)(s - e->slots);
  s->count = 0;
  /* Shift later members of the probe run back into the hole. */
  for (size_t j = (hole + 1) & mask; e->slots[j].count != 0;
       j = (j + 1) & mask) {
    size_t home = slot_of(e, e->slots[j].addr);
    /* j may move to hole when its home is not inside (hole, j]. */
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      e->slots[hole] = e->slots[j];
      e->slots[j].count = 0;
      hole = j;
    }
  }
}

/* ---- life cycle ---------------------------------------------------------- */

od_edge *od_edge_new(od_service *svc, char *err, size_t err_len) {
  od_edge *e = calloc(1, sizeof *e);
  if (e == NULL) {
    snprintf(err, err_len, "out of memory for the connection table");
    return NULL;
  }
  e->svc = svc;
  /* Every connection MHD may hold, WebSocket ones included, at most half
   * full. */
  size_t want = 2 * ((size_t)svc->cfg.max_connections +
                     (size_t)svc->cfg.max_ws_clients + OD_CONN_HEADROOM);
  e->nslots = 64;
  while (e->nslots < want)
    e->nslots *= 2;
  e->slots = calloc(e->nslots, sizeof *e->slots);
  if (e->slots == NULL) {
    free(e);
    snprintf(err, err_len, "out of memory for the connection table");
    return NULL;
  }
  pthread_mutex_init(&e->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&e->wake, &ca);
  pthread_condattr_destroy(&ca);
  e->body_budget = (uint64_t)svc->cfg.max_body_inflight_mb << 20;
  e->memory_budget = (uint64_t)svc->cfg.body_memory_mb << 20;
  e->addr_budget = svc->cfg.max_body_inflight_addr_mb > 0
                       ? (uint64_t)svc->cfg.max_body_inflight_addr_mb << 20
                       : 0;
  e->header_timeout = svc->cfg.header_timeout_s;
  e->min_rate = svc->cfg.body_min_rate;
  return e;
}

/* Shuts a connection down and counts why. Called with mu held. */
static void cut(od_edge *e, od_conn *c, od_close_reason why) {
  c->cut = 1;
  shutdown(c->fd, SHUT_RDWR);
  od_edge_count_close(e, why);
}

/* One pass over the table: the header deadline and the body rate. Called
 * with mu held. */
static void sweep(od_edge *e, double now) {
  for (od_conn *c = e->head; c != NULL; c = c->next) {
    if (c->cut)
      continue;
    double dt = now - c->t_phase;
    if (c->phase == OD_CONN_HEADERS && dt > e->header_timeout) {
      cut(e, c, OD_CLOSE_HEADER_TIMEOUT);
    } else if (c->phase == OD_CONN_BODY && e->min_rate > 0 &&
               dt >= e->header_timeout) {
      uint64_t got = atomic_exchange(&c->body_bytes, 0);
      if ((double)got < e->min_rate * dt)
        cut(e, c, OD_CLOSE_BODY_TOO_SLOW);
      else
        c->t_phase = now; /* a new window */
    }
  }
}

static void *sweeper_main(void *arg) {
  od_edge *e = arg;
  /* A few passes per deadline: a connection is cut at most a quarter of
   * --header-timeout late (and never more than 0.25 s). */
  double step = e->header_timeout / 4;
  if (step > 0.25)
    step = 0.25;
  if (step < 0.01)
    step = 0.01;
  pthread_mutex_lock(&e->mu);
  while (!e->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = (double)ts.tv_sec + ts.tv_nsec / 1e9 + step;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    pthread_cond_timedwait(&e->wake, &e->mu, &ts);
    if (!e->stop)
      sweep(e, od_now());
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}

void od_edge_sweep(od_edge *e, double now) {
  pthread_mutex_lock(&e->mu);
  sweep(e, now);
  pthread_mutex_unlock(&e->mu);
}

int od_edge_start(od_edge *e, char *err, size_t err_len) {
  int rc = pthread_create(&e->sweeper, NULL, sweeper_main, e);
  if (rc != 0) {
    snprintf(err, err_len, "cannot start the connection sweeper: %s",
             strerror(rc));
    return -1;
  }
  e->started = 1;
  return 0;
}

void od_edge_free(od_edge *e) {
  if (e == NULL)
    return;
  if (e->started) {
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->sweeper, NULL);
  }
  /* MHD is stopped: every connection was notified CLOSED and freed. */
  pthread_cond_destroy(&e->wake);
  pthread_mutex_destroy(&e->mu);
  free(e->slots);
  free(e);
}

/* ---- connections -----------------------------------------------------------
 */

static uint32_t ipv4_of(const struct sockaddr *sa) {
  if (sa == NULL || sa->sa_family != AF_INET)
    return 0;
  const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
  return ntohl(in->sin_addr.s_addr);
}

/* 1 when the address is counted in the table (--max-conns-per-address,
 * --max-body-inflight-per-address-mb). */
static int limited(od_edge *e, uint32_t addr) {
  return addr != 0 &&
         (e->svc->cfg.max_conns_per_addr > 0 || e->addr_budget > 0) &&
         !od_proxies_trusted_v4(&e->svc->proxies, addr);
}

int od_edge_admit(od_edge *e, const struct sockaddr *sa) {
  uint32_t addr = ipv4_of(sa);
  if (!limited(e, addr) || e->svc->cfg.max_conns_per_addr <= 0)
    return 1;
  pthread_mutex_lock(&e->mu);
  addr_slot *s = addr_find(e, addr);
  int ok = s == NULL || s->count == 0 ||
           s->count < (uint32_t)e->svc->cfg.max_conns_per_addr;
  pthread_mutex_unlock(&e->mu);
  if (!ok)
    od_edge_count_close(e, OD_CLOSE_PER_ADDRESS);
  return ok;
}

od_conn *od_edge_open(od_edge *e, int fd, const struct sockaddr *sa,
                      int admin) {
  od_conn *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL; /* not tracked: MHD's own idle timeout still applies */
  c->fd = fd;
  c->admin = admin;
  c->late = !admin && atomic_load(&e->svc->draining);
  c->phase = OD_CONN_HEADERS;
  c->t_phase = od_now();
  uint32_t addr = ipv4_of(sa);
  int refuse = 0;
  pthread_mutex_lock(&e->mu);
  if (!admin && limited(e, addr)) {
    addr_slot *s = addr_find(e, addr);
    if (s != NULL && e->svc->cfg.max_conns_per_addr > 0 &&
        s->count >= (uint32_t)e->svc->cfg.max_conns_per_addr) {
      /* Two threads passed od_edge_admit at once: this one is over. */
      refuse = 1;
      c->cut = 1;
      shutdown(fd, SHUT_RDWR);
    } else if (s != NULL) {
      if (s->count == 0)
        s->body = 0;
      s->addr = addr;
      s->count++;
      c->addr = addr;
    }
  }
  c->next = e->head;
  if (e->head)
    e->head->prev = c;
  e->head = c;
  pthread_mutex_unlock(&e->mu);
  om_gauge_inc(e->svc->m.conns_open[admin ? 1 : 0]);
  if (refuse)
    od_edge_count_close(e, OD_CLOSE_PER_ADDRESS);
  return c;
}

void od_edge_close(od_edge *e, od_conn *c) {
  if (c == NULL)
    return;
  pthread_mutex_lock(&e->mu);
  if (c->prev)
    c->prev->next = c->next;
  else
    e->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  if (c->addr != 0) {
    addr_slot *s = addr_find(e, c->addr);
    if (s != NULL && s->count > 0) {
      s->body -= c->body < s->body ? c->body : s->body;
      if (--s->count == 0)
        addr_remove(e, s);
    }
  }
  pthread_mutex_unlock(&e->mu);
  om_gauge_dec(e->svc->m.conns_open[c->admin ? 1 : 0]);
  free(c);
}

void od_edge_phase(od_edge *e, od_conn *c, od_conn_phase phase) {
  if (c == NULL)
    return;
  pthread_mutex_lock(&e->mu);
  c->phase = phase;
  c->t_phase = od_now();
  atomic_store(&c->body_bytes, 0);
  pthread_mutex_unlock(&e->mu);
}

void od_edge_body(od_conn *c, size_t n) {
  if (c != NULL)
    atomic_fetch_add(&c->body_bytes, n);
}

int od_edge_late(const od_conn *c) { return c != NULL && c->late; }

int od_edge_conns_of(od_edge *e, const struct sockaddr *sa) {
  uint32_t addr = ipv4_of(sa);
  pthread_mutex_lock(&e->mu);
  addr_slot *s = addr_find(e, addr);
  int n = s != NULL ? (int)s->count : 0;
  pthread_mutex_unlock(&e->mu);
  return n;
}

/* ---- the body budgets (--max-body-inflight-mb, --body-memory-mb) ---------
 */

/* Takes bytes from a budget (used: what is taken), or -1 with nothing
 * taken when they do not fit; g shows what is taken. */
static int take(_Atomic uint64_t *used, uint64_t budget, uint64_t bytes,
                om_gauge *g) {
  uint64_t cur = atomic_load(used);
  do {
    if (cur + bytes > budget || cur + bytes < cur)
      return -1;
  } while (!atomic_compare_exchange_weak(used, &cur, cur + bytes));
  om_gauge_add(g, (double)bytes);
  return 0;
}

static void give(_Atomic uint64_t *used, uint64_t bytes, om_gauge *g) {
  if (bytes == 0)
    return;
  atomic_fetch_sub(used, bytes);
  om_gauge_add(g, -(double)bytes);
}

int od_edge_reserve(od_edge *e, uint64_t bytes) {
  return take(&e->body_inflight, e->body_budget, bytes,
              e->svc->m.body_inflight);
}

void od_edge_release(od_edge *e, uint64_t bytes) {
  give(&e->body_inflight, bytes, e->svc->m.body_inflight);
}

int od_edge_reserve_addr(od_edge *e, od_conn *c, uint64_t bytes) {
  if (c == NULL || c->addr == 0 || e->addr_budget == 0 || bytes == 0)
    return 0;
  pthread_mutex_lock(&e->mu);
  addr_slot *s = addr_find(e, c->addr);
  int ok = s != NULL && s->count > 0 && bytes <= e->addr_budget &&
           s->body <= e->addr_budget - bytes;
  if (ok) {
    s->body += bytes;
    c->body += bytes;
  }
  pthread_mutex_unlock(&e->mu);
  return ok ? 0 : -1;
}

void od_edge_release_addr(od_edge *e, od_conn *c, uint64_t bytes) {
  if (c == NULL || c->addr == 0 || bytes == 0)
    return;
  pthread_mutex_lock(&e->mu);
  if (bytes > c->body)
    bytes = c->body;
  c->body -= bytes;
  addr_slot *s = addr_find(e, c->addr);
  if (s != NULL && s->count > 0)
    s->body -= bytes < s->body ? bytes : s->body;
  pthread_mutex_unlock(&e->mu);
}

/* An eighth of the budget at most for one body, so that one large upload
 * cannot take the memory every ordinary one would use. */
int od_edge_reserve_memory(od_edge *e, uint64_t bytes) {
  if (bytes == 0 || bytes > e->memory_budget / 8)
    return -1;
  return take(&e->body_memory, e->memory_budget, bytes, e->svc->m.body_memory);
}

void od_edge_release_memory(od_edge *e, uint64_t bytes) {
  give(&e->body_memory, bytes, e->svc->m.body_memory);
}

void od_edge_count_close(od_edge *e, od_close_reason why) {
  if ((unsigned)why < OD_CLOSE_REASONS)
    om_counter_inc(e->svc->m.conns_closed[why]);
}
