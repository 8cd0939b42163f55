/* fdlimit.c: how many file descriptors the configured limits need, and
 * making sure the process may open them.
 *
 * Out of descriptors, a server misbehaves in ways that look like other
 * faults: accept() stops, open() of a file that exists fails (a download
 * would say 404, a job "the uploaded image is gone"). So start-up adds up
 * what the flags allow at once (od_fd_need), raises the soft RLIMIT_NOFILE
 * to the hard one when it is lower than that, and refuses to start, with
 * the numbers, when even the hard limit is too low. What still runs out
 * (another process's fds, ENFILE for the whole system) is answered 503 and
 * counted in orfeas_fd_exhausted_total.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "orfeasd.h"

/* Fixed descriptors: stdin/out/err, two listeners, an epoll fd and an
 * inter-thread pipe per HTTP thread (and the admin daemon's), the hub's
 * epoll and eventfd, the sweeper, the cache and static folders, the store
 * (SQLite: database, WAL, shm, journal; Redis: a connection or two), the
 * GPU library, /proc reads of the process collector, and a margin for the
 * libraries' own (resolver, dlopen). */
#define FD_BASE 48

void od_fd_need(const od_config *c, od_fd_parts *p) {
  memset(p, 0, sizeof *p);
  /* Each HTTP connection: its socket, and one file while it holds one
   * (an upload's body file, a download, a static file). MHD's hard limit
   * is --max-connections plus the headroom that answers 429. */
  p->http = 2 * ((uint64_t)c->max_connections + OD_CONN_HEADROOM);
  p->admin = c->admin_host[0] ? (uint64_t)c->admin_connections : 0;
  /* WebSocket clients: one socket each (counted apart from HTTP, whether
   * or not they also hold an HTTP slot: the larger figure is the safe
   * one). */
  p->websocket = (uint64_t)c->max_ws_clients;
  /* A worker reads the upload, writes the model (and its tmp), and the
   * cache's disk tier writes an entry. */
  p->workers = 4 * (uint64_t)c->workers;
  p->base = FD_BASE + 2 * ((uint64_t)c->http_threads + 1);
  p->total = p->http + p->admin + p->websocket + p->workers + p->base;
}

int od_fd_ensure(const od_config *c, od_fd_parts *p, char *msg,
                 size_t msg_len) {
  od_fd_need(c, p);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    snprintf(msg, msg_len, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    return -1;
  }
  p->soft_before = rl.rlim_cur;
  p->hard = rl.rlim_max;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < p->total) {
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < p->total) {
      snprintf(msg, msg_len,
               "the configured limits need %llu file descriptors "
               "(HTTP %llu = 2 x (--max-connections %d + %d), admin %llu, "
               "WebSocket %llu, workers %llu, other %llu) but the hard "
               "limit (RLIMIT_NOFILE) is %llu: raise it (systemd: "
               "LimitNOFILE=) or lower --max-connections / "
               "--max-ws-clients",
               (unsigned long long)p->total, (unsigned long long)p->http,
               c->max_connections, OD_CONN_HEADROOM,
               (unsigned long long)p->admin, (unsigned long long)p->websocket,
               (unsigned long long)p->workers, (unsigned long long)p->base,
               (unsigned long long)rl.rlim_max);
      return -1;
    }
    /* Up to the hard limit (bounded: a huge limit buys nothing). */
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY || want > (rlim_t)1 << 20)
      want = p->total > (rlim_t)1 << 20 ? p->total : (rlim_t)1 << 20;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      snprintf(msg, msg_len, "setrlimit(RLIMIT_NOFILE, %llu): %s",
               (unsigned long long)want, strerror(errno));
      return -1;
    }
  }
  p->soft = rl.rlim_cur;
  snprintf(msg, msg_len,
           "file descriptors: need %llu (HTTP %llu, admin %llu, WebSocket "
           "%llu, workers %llu, other %llu); soft limit %llu%s, hard %llu",
           (unsigned long long)p->total, (unsigned long long)p->http,
           (unsigned long long)p->admin, (unsigned long long)p->websocket,
           (unsigned long long)p->workers, (unsigned long long)p->base,
           (unsigned long long)p->soft,
           p->soft != p->soft_before ? " (raised)" : "",
           (unsigned long long)p->hard);
  return 0;
}

int od_errno_is_fd_exhaustion(int e) { return e == EMFILE || e == ENFILE; }
