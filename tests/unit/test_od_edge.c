/* The HTTP edge's own state (src/edge.c, src/body.c, src/fdlimit.c): the
 * per-address connection counts (an open-addressing table with
 * backward-shift deletion), the header deadline's sweeper on real sockets,
 * the body budget, body files, and the file-descriptor arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "orfeasd.h"

static od_service *service(int max_conns, int per_addr) {
  od_service *svc = calloc(1, sizeof *svc);
  assert_non_null(svc);
  od_config_defaults(&svc->cfg);
  svc->cfg.max_connections = max_conns;
  svc->cfg.max_conns_per_addr = per_addr;
  svc->cfg.header_timeout_s = 0.2;
  svc->cfg.max_body_inflight_mb = 1;
  char err[256];
  assert_int_equal(od_metrics_init(&svc->m, "test", err, sizeof err), 0);
  return svc;
}

static void service_free(od_service *svc) {
  od_metrics_free(&svc->m);
  free(svc);
}

static struct sockaddr_in addr(uint32_t host_order) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(host_order);
  return sa;
}

#define SA(x) ((const struct sockaddr *)(const void *)&(x))

static void per_address_counts(void **state) {
  (void)state;
  od_service *svc = service(200, 3);
  char err[256];
  od_edge *e = od_edge_new(svc, err, sizeof err);
  assert_non_null(e);
  /* 150 connections over 50 addresses chosen to collide in the table. */
  enum { N = 150 };
  od_conn *c[N];
  struct sockaddr_in sa[N];
  for (int i = 0; i < N; i++) {
    sa[i] = addr(0x0A000000u + (uint32_t)(i % 50) * 512u);
    assert_int_equal(od_edge_admit(e, SA(sa[i])), 1);
    c[i] = od_edge_open(e, -1, SA(sa[i]), 0);
    assert_non_null(c[i]);
  }
  for (int i = 0; i < 50; i++) {
    assert_int_equal(od_edge_conns_of(e, SA(sa[i])), 3);
    assert_int_equal(od_edge_admit(e, SA(sa[i])), 0); /* a 4th: refused */
  }
  assert_int_equal(om_counter_value(svc->m.conns_closed[OD_CLOSE_PER_ADDRESS]),
                   50);
  /* Close in a scattered order; every other address keeps its count. */
  for (int k = 0; k < N; k++) {
    int i = (k * 7) % N;
    od_edge_close(e, c[i]);
    c[i] = NULL;
    for (int j = 0; j < 50; j++) {
      int open = 0;
      for (int m = j; m < N; m += 50)
        open += c[m] != NULL;
      assert_int_equal(od_edge_conns_of(e, SA(sa[j])), open);
    }
  }
  assert_int_equal(om_gauge_value(svc->m.conns_open[0]), 0);
  od_edge_free(e);
  service_free(svc);
}

static void trusted_and_admin_are_not_counted(void **state) {
  (void)state;
  od_service *svc = service(16, 1);
  char err[256];
  assert_int_equal(
      od_proxies_parse(&svc->proxies, "127.0.0.1", err, sizeof err), 0);
  od_edge *e = od_edge_new(svc, err, sizeof err);
  struct sockaddr_in proxy = addr(0x7F000001u), other = addr(0x7F000002u);
  od_conn *a = od_edge_open(e, -1, SA(proxy), 0);
  assert_int_equal(od_edge_admit(e, SA(proxy)), 1);
  od_conn *b = od_edge_open(e, -1, SA(other), 1); /* admin: not counted */
  assert_int_equal(od_edge_admit(e, SA(other)), 1);
  assert_int_equal(om_gauge_value(svc->m.conns_open[1]), 1);
  od_edge_close(e, a);
  od_edge_close(e, b);
  od_edge_free(e);
  service_free(svc);
}

/* 1 when the peer of s has been shut down (reads EOF). */
static int shut(int s) {
  char b;
  return recv(s, &b, 1, MSG_DONTWAIT) == 0;
}

/* The sweep, at chosen times (deterministic): a connection waiting for
 * headers past --header-timeout (0.2 s) is cut, one being answered is not;
 * a body below --body-min-rate over a window is cut, one above it is not. */
static void sweep_cuts_late_headers_and_slow_bodies(void **state) {
  (void)state;
  od_service *svc = service(16, 0);
  svc->cfg.body_min_rate = 1000;
  char err[256];
  od_edge *e = od_edge_new(svc, err, sizeof err);
  int idle[2], busy[2], body[2], fast[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, idle), 0);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, busy), 0);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, body), 0);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fast), 0);
  od_conn *ci = od_edge_open(e, idle[0], NULL, 0);
  od_conn *cb = od_edge_open(e, busy[0], NULL, 0);
  od_conn *cs = od_edge_open(e, body[0], NULL, 0);
  od_conn *cf = od_edge_open(e, fast[0], NULL, 0);
  od_edge_phase(e, cb, OD_CONN_BUSY);
  od_edge_phase(e, cs, OD_CONN_BODY);
  od_edge_phase(e, cf, OD_CONN_BODY);
  double t0 = od_now();
  od_edge_sweep(e, t0 + 0.1); /* within every deadline */
  assert_false(shut(idle[1]) || shut(body[1]) || shut(fast[1]));
  od_edge_body(cf, 1000); /* 1000 B in 0.5 s: 2000 B/s */
  od_edge_body(cs, 10);   /* 20 B/s */
  od_edge_sweep(e, t0 + 0.5);
  assert_true(shut(idle[1]));
  assert_false(shut(busy[1]));
  assert_true(shut(body[1]));
  assert_false(shut(fast[1]));
  /* The fast body's next window: nothing more came, so it is cut too. */
  od_edge_sweep(e, t0 + 1.0);
  assert_true(shut(fast[1]));
  assert_false(shut(busy[1]));
  assert_int_equal(
      om_counter_value(svc->m.conns_closed[OD_CLOSE_HEADER_TIMEOUT]), 1);
  assert_int_equal(
      om_counter_value(svc->m.conns_closed[OD_CLOSE_BODY_TOO_SLOW]), 2);
  od_edge_close(e, ci);
  od_edge_close(e, cb);
  od_edge_close(e, cs);
  od_edge_close(e, cf);
  od_edge_free(e);
  for (int i = 0; i < 2; i++) {
    close(idle[i]);
    close(busy[i]);
    close(body[i]);
    close(fast[i]);
  }
  service_free(svc);
}

/* The sweeper thread does it on its own (within a generous deadline: the
 * machine may be loaded). */
static void sweeper_thread_runs(void **state) {
  (void)state;
  od_service *svc = service(16, 0);
  char err[256];
  od_edge *e = od_edge_new(svc, err, sizeof err);
  assert_int_equal(od_edge_start(e, err, sizeof err), 0);
  int idle[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, idle), 0);
  od_conn *ci = od_edge_open(e, idle[0], NULL, 0);
  int cut = 0;
  for (int i = 0; i < 500 && !cut; i++) {
    nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    cut = shut(idle[1]);
  }
  assert_true(cut);
  od_edge_close(e, ci);
  od_edge_free(e);
  close(idle[0]);
  close(idle[1]);
  service_free(svc);
}

static void body_budget(void **state) {
  (void)state;
  od_service *svc = service(16, 0); /* 1 MiB */
  char err[256];
  od_edge *e = od_edge_new(svc, err, sizeof err);
  assert_int_equal(od_edge_reserve(e, 600 << 10), 0);
  assert_int_equal(od_edge_reserve(e, 600 << 10), -1);
  assert_int_equal(od_edge_reserve(e, 424 << 10), 0);
  assert_int_equal(od_edge_reserve(e, 1), -1);
  assert_int_equal(od_edge_reserve(e, UINT64_MAX), -1);
  assert_int_equal(om_gauge_value(svc->m.body_inflight), 1 << 20);
  od_edge_release(e, 600 << 10);
  od_edge_release(e, 424 << 10);
  assert_int_equal(om_gauge_value(svc->m.body_inflight), 0);
  assert_int_equal(od_edge_reserve(e, 1 << 20), 0);
  od_edge_release(e, 1 << 20);
  od_edge_free(e);
  service_free(svc);
}

/* --max-body-inflight-per-address-mb: one address's requests hold at most
 * its share, others are not held back by it, a closed connection gives
 * back what it held, the admin listener is not counted. */
static void body_budget_per_address(void **state) {
  (void)state;
  od_service *svc = service(16, 0); /* no connection limit per address */
  svc->cfg.max_body_inflight_mb = 4;
  svc->cfg.max_body_inflight_addr_mb = 1;
  char err[256];
  od_edge *e = od_edge_new(svc, err, sizeof err);
  assert_non_null(e);
  struct sockaddr_in a = addr(0x0A000001), b = addr(0x0A000002);
  od_conn *a1 = od_edge_open(e, -1, SA(a), 0);
  od_conn *a2 = od_edge_open(e, -1, SA(a), 0);
  od_conn *b1 = od_edge_open(e, -1, SA(b), 0);
  od_conn *adm = od_edge_open(e, -1, SA(a), 1);
  assert_int_equal(od_edge_reserve_addr(e, a1, 600 << 10), 0);
  assert_int_equal(od_edge_reserve_addr(e, a2, 600 << 10), -1);
  assert_int_equal(od_edge_reserve_addr(e, a2, 424 << 10), 0);
  assert_int_equal(od_edge_reserve_addr(e, a2, 1), -1);
  assert_int_equal(od_edge_reserve_addr(e, a2, UINT64_MAX), -1);
  assert_int_equal(od_edge_reserve_addr(e, b1, 1 << 20), 0);
  assert_int_equal(od_edge_reserve_addr(e, adm, 3 << 20), 0);
  od_edge_release_addr(e, a1, 600 << 10);
  assert_int_equal(od_edge_reserve_addr(e, a1, 600 << 10), 0);
  /* Closed holding its bytes (a request freed without its release). */
  od_edge_close(e, a2);
  assert_int_equal(od_edge_reserve_addr(e, a1, 424 << 10), 0);
  od_edge_close(e, a1);
  od_edge_close(e, b1);
  od_edge_close(e, adm);
  /* A new connection from a: a fresh share. */
  od_conn *a3 = od_edge_open(e, -1, SA(a), 0);
  assert_int_equal(od_edge_reserve_addr(e, a3, 1 << 20), 0);
  od_edge_close(e, a3);
  od_edge_free(e);
  service_free(svc);
}

/* --body-memory-mb: one body at most an eighth of it, all of them within
 * it; a body that does not fit takes nothing. */
static void body_memory_budget(void **state) {
  (void)state;
  od_service *svc = service(16, 0);
  svc->cfg.body_memory_mb = 1; /* 128 KiB a body at most */
  char err[256];
  od_edge *e = od_edge_new(svc, err, sizeof err);
  assert_int_equal(od_edge_reserve_memory(e, (128 << 10) + 1), -1);
  assert_int_equal(od_edge_reserve_memory(e, 0), -1);
  for (int i = 0; i < 8; i++)
    assert_int_equal(od_edge_reserve_memory(e, 128 << 10), 0);
  assert_int_equal(od_edge_reserve_memory(e, 1), -1);
  assert_int_equal(om_gauge_value(svc->m.body_memory), 1 << 20);
  od_edge_release_memory(e, 128 << 10);
  assert_int_equal(od_edge_reserve_memory(e, 100 << 10), 0);
  assert_int_equal(od_edge_reserve_memory(e, 100 << 10), -1);
  od_edge_release_memory(e, 100 << 10);
  for (int i = 0; i < 7; i++)
    od_edge_release_memory(e, 128 << 10);
  assert_int_equal(om_gauge_value(svc->m.body_memory), 0);
  od_edge_free(e);
  svc->cfg.body_memory_mb = 0; /* off: every body to a file */
  e = od_edge_new(svc, err, sizeof err);
  assert_int_equal(od_edge_reserve_memory(e, 1), -1);
  od_edge_free(e);
  service_free(svc);
}

static void bodies_in_memory_and_in_files(void **state) {
  (void)state;
  char dir[] = "/tmp/od-edge-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char err[256];
  int removed = -1;
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s/tmp", dir);
  assert_int_equal(od_body_sweep(tmp, &removed, err, sizeof err), 0);
  assert_int_equal(removed, 0);
  od_body m, f;
  od_body_init(&m);
  od_body_init(&f);
  assert_null(od_body_data(&m));
  for (int i = 0; i < 1000; i++)
    assert_int_equal(od_body_append(&m, "0123456789", 10), 0);
  assert_int_equal(m.len, 10000);
  assert_memory_equal(od_body_data(&m) + 9990, "0123456789", 10);
  /* An upload's memory body: its declared length allocated at once. */
  od_body u;
  od_body_init(&u);
  assert_int_equal(od_body_to_memory(&u, 20000), 0);
  assert_int_equal(u.fd, -1);
  assert_int_equal(u.cap, 20000);
  for (int i = 0; i < 2000; i++)
    assert_int_equal(od_body_append(&u, "9876543210", 10), 0);
  assert_int_equal(u.len, 20000);
  assert_int_equal(u.cap, 20000);
  assert_memory_equal(od_body_data(&u) + 19990, "9876543210", 10);
  od_body_free(&u);
  assert_int_equal(od_body_to_file(&f, tmp), 0);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s", f.path);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(od_body_append(&f, "abcdefghij", 10), 0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_size, 10000);
  const uint8_t *d = od_body_data(&f);
  assert_non_null(d);
  assert_memory_equal(d + 5000, "abcdefghij", 10);
  od_body_free(&m);
  od_body_free(&f);
  assert_int_equal(stat(path, &st), -1); /* the file goes with the body */
  /* What a crash leaves: body-* files go at start-up, others stay. */
  char stale[PATH_MAX + 32], keep[PATH_MAX + 32];
  snprintf(stale, sizeof stale, "%s/body-old", tmp);
  snprintf(keep, sizeof keep, "%s/other", tmp);
  close(open(stale, O_CREAT | O_WRONLY, 0600));
  close(open(keep, O_CREAT | O_WRONLY, 0600));
  assert_int_equal(od_body_sweep(tmp, &removed, err, sizeof err), 0);
  assert_int_equal(removed, 1);
  assert_int_equal(stat(stale, &st), -1);
  assert_int_equal(stat(keep, &st), 0);
  unlink(keep);
  rmdir(tmp);
  rmdir(dir);
  /* A folder that cannot be made: the error names it. */
  assert_int_equal(od_body_sweep("/proc/no/such", &removed, err, sizeof err),
                   -1);
  assert_non_null(strstr(err, "/proc/no/such"));
}

static void fd_need_adds_up(void **state) {
  (void)state;
  od_config c;
  od_config_defaults(&c);
  c.workers = 2;
  c.http_threads = 2;
  od_fd_parts p;
  od_fd_need(&c, &p);
  assert_int_equal(p.http, 2 * (1024 + OD_CONN_HEADROOM));
  assert_int_equal(p.admin, 0);
  assert_int_equal(p.websocket, 1000);
  assert_int_equal(p.workers, 8);
  assert_int_equal(p.total,
                   p.http + p.admin + p.websocket + p.workers + p.base);
  snprintf(c.admin_host, sizeof c.admin_host, "127.0.0.1");
  od_fd_need(&c, &p);
  assert_int_equal(p.admin, 16);
  assert_int_equal(od_errno_is_fd_exhaustion(EMFILE), 1);
  assert_int_equal(od_errno_is_fd_exhaustion(ENFILE), 1);
  assert_int_equal(od_errno_is_fd_exhaustion(ENOENT), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(per_address_counts),
      cmocka_unit_test(trusted_and_admin_are_not_counted),
      cmocka_unit_test(sweep_cuts_late_headers_and_slow_bodies),
      cmocka_unit_test(sweeper_thread_runs),
      cmocka_unit_test(body_budget),
      cmocka_unit_test(body_budget_per_address),
      cmocka_unit_test(body_memory_budget),
      cmocka_unit_test(bodies_in_memory_and_in_files),
      cmocka_unit_test(fd_need_adds_up),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
