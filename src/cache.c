/* cache.c: the content-addressed result cache, two tiers.
 *
 * Key: 32 bytes, SHA-256 of the image's SHA-256 digest followed by every
 * generation parameter (jobs.c builds it). Value: a result (the model and
 * its quality report, od_cache_result_pack below); the tiers treat it as
 * bytes.
 *
 *   memory  entries hold the bytes; bounded by mem_bytes; LRU eviction.
 *   disk    files DIR/<hex key>.bin; bounded by disk_bytes; LRU eviction by
 *           an in-memory index (rebuilt at start-up from the folder, oldest
 *           modification time first).
 *
 * Both tiers live in one doubly linked LRU list each and one array index
 * searched linearly by key: the entry counts are small (a model is 0.1-80
 * MB, the bounds are MBs to GBs), and a SHA-256 comparison is cheap. Disk
 * writes go to a temporary name and are renamed, so a crash never leaves a
 * half file under a valid key (fileio.c). All under one mutex: file I/O for a put holds
 * it, which is acceptable because puts happen once per generated model.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orfeasd.h"

typedef struct entry {
  uint8_t key[32];
  size_t len;
  uint8_t *data;      /* memory tier only; owned */
  double stamp;       /* disk tier at adoption: mtime, for ordering */
  struct entry *prev, *next; /* LRU: head = most recent */
} entry;

typedef struct {
  entry *head, *tail;
  size_t bytes, count, bound;
} tier;

struct od_cache {
  pthread_mutex_t mu;
  tier t[OD_CACHE_TIERS];
  char dir[PATH_MAX];
};

static void lru_unlink(tier *t, entry *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    t->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    t->tail = e->prev;
  e->prev = e->next = NULL;
  t->bytes -= e->len;
  t->count--;
}

static void lru_push_front(tier *t, entry *e) {
  e->prev = NULL;
  e->next = t->head;
  if (t->head)
    t->head->prev = e;
  t->head = e;
  if (t->tail == NULL)
    t->tail = e;
  t->bytes += e->len;
  t->count++;
}

static entry *lookup(tier *t, const uint8_t key[32]) {
  for (entry *e = t->head; e; e = e->next)
    if (memcmp(e->key, key, 32) == 0)
      return e;
  return NULL;
}

static void hex_key(const uint8_t key[32], char out[65]) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hx[key[i] >> 4];
    out[2 * i + 1] = hx[key[i] & 15];
  }
  out[64] = '\0';
}

static int unhex_key(const char *s, uint8_t key[32]) {
  for (int i = 0; i < 64; i++) {
    char c = s[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0)
      return -1;
    if (i % 2 == 0)
      key[i / 2] = (uint8_t)(v << 4);
    else
      key[i / 2] |= (uint8_t)v;
  }
  return 0;
}

static void disk_path(const od_cache *c, const uint8_t key[32], char *out,
                      size_t len) {
  char hx[65];
  hex_key(key, hx);
  snprintf(out, len, "%s/%s.bin", c->dir, hx);
}

static void evict(od_cache *c, od_cache_tier which, size_t need) {
  tier *t = &c->t[which];
  while (t->tail != NULL && t->bytes + need > t->bound) {
    entry *e = t->tail;
    lru_unlink(t, e);
    if (which == OD_CACHE_DISK) {
      char path[PATH_MAX + 80];
      disk_path(c, e->key, path, sizeof path);
      unlink(path);
    }
    free(e->data);
    free(e);
  }
}

static int cmp_stamp(const void *a, const void *b) {
  const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
  return (x->stamp > y->stamp) - (x->stamp < y->stamp);
}

/* Adopts DIR/<64 hex>.bin files, oldest first, so the newest are the most
 * recent in the LRU; removes leftovers (temporary files, files past the
 * bound). */
static int adopt_disk(od_cache *c, char *err, size_t err_len) {
  DIR *d = opendir(c->dir);
  if (d == NULL) {
    snprintf(err, err_len, "cache: cannot open %s: %s", c->dir, strerror(errno));
    return -1;
  }
  entry **found = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    char path[PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/%s", c->dir, de->d_name);
    uint8_t key[32];
    struct stat st;
    if (de->d_name[0] == '.')
      continue;
    if (strlen(de->d_name) != 68 || strcmp(de->d_name + 64, ".bin") != 0 ||
        unhex_key(de->d_name, key) != 0 || stat(path, &st) != 0 ||
        !S_ISREG(st.st_mode)) {
      unlink(path); /* a temporary file from an interrupted put */
      continue;
    }
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      entry **g = realloc(found, nc * sizeof *g);
      if (g == NULL)
        break;
      found = g;
      cap = nc;
    }
    entry *e = calloc(1, sizeof *e);
    if (e == NULL)
      break;
    memcpy(e->key, key, 32);
    e->len = (size_t)st.st_size;
    e->stamp = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
    found[n++] = e;
  }
  closedir(d);
  if (n > 0)
    qsort(found, n, sizeof *found, cmp_stamp);
  for (size_t i = 0; i < n; i++) {
    evict(c, OD_CACHE_DISK, found[i]->len);
    if (found[i]->len > c->t[OD_CACHE_DISK].bound) {
      char path[PATH_MAX + 80];
      disk_path(c, found[i]->key, path, sizeof path);
      unlink(path);
      free(found[i]);
      continue;
    }
    lru_push_front(&c->t[OD_CACHE_DISK], found[i]);
  }
  free(found);
  return 0;
}

od_cache *od_cache_new(size_t mem_bytes, const char *dir, size_t disk_bytes,
                       char *err, size_t err_len) {
  od_cache *c = calloc(1, sizeof *c);
  if (c == NULL) {
    snprintf(err, err_len, "cache: out of memory");
    return NULL;
  }
  pthread_mutex_init(&c->mu, NULL);
  c->t[OD_CACHE_MEMORY].bound = mem_bytes;
  c->t[OD_CACHE_DISK].bound = disk_bytes;
  if (snprintf(c->dir, sizeof c->dir, "%s", dir) >= (int)sizeof c->dir ||
      (mkdir(dir, 0700) != 0 && errno != EEXIST)) {
    snprintf(err, err_len, "cache: cannot create %s: %s", dir, strerror(errno));
    od_cache_free(c);
    return NULL;
  }
  if (adopt_disk(c, err, err_len) != 0) {
    od_cache_free(c);
    return NULL;
  }
  return c;
}

void od_cache_free(od_cache *c) {
  if (c == NULL)
    return;
  for (int t = 0; t < OD_CACHE_TIERS; t++) {
    entry *e = c->t[t].head;
    while (e) {
      entry *n = e->next;
      free(e->data);
      free(e);
      e = n;
    }
  }
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* Puts bytes into the memory tier (a copy), evicting to make room. Called
 * with the lock held. */
static void mem_put(od_cache *c, const uint8_t key[32], const uint8_t *data,
                    size_t len) {
  tier *t = &c->t[OD_CACHE_MEMORY];
  if (len > t->bound || lookup(t, key) != NULL)
    return;
  entry *e = calloc(1, sizeof *e);
  uint8_t *copy = malloc(len ? len : 1);
  if (e == NULL || copy == NULL) {
    free(e);
    free(copy);
    return;
  }
  memcpy(copy, data, len);
  memcpy(e->key, key, 32);
  e->data = copy;
  e->len = len;
  evict(c, OD_CACHE_MEMORY, len);
  lru_push_front(t, e);
}

int od_cache_get(od_cache *c, const uint8_t key[32], uint8_t **data,
                 size_t *len, od_cache_tier *tier_out, unsigned *miss_tiers) {
  unsigned miss = 0;
  int hit = 0;
  pthread_mutex_lock(&c->mu);
  entry *e = lookup(&c->t[OD_CACHE_MEMORY], key);
  if (e != NULL) {
    *data = malloc(e->len ? e->len : 1);
    if (*data != NULL) {
      memcpy(*data, e->data, e->len);
      *len = e->len;
      *tier_out = OD_CACHE_MEMORY;
      lru_unlink(&c->t[OD_CACHE_MEMORY], e);
      lru_push_front(&c->t[OD_CACHE_MEMORY], e);
      hit = 1;
    }
  } else {
    miss |= 1u << OD_CACHE_MEMORY;
    e = lookup(&c->t[OD_CACHE_DISK], key);
    if (e != NULL) {
      char path[PATH_MAX + 80];
      disk_path(c, key, path, sizeof path);
      size_t got = 0;
      uint8_t *buf = od_file_read(path, &got);
      if (buf != NULL && got != e->len) {
        free(buf);
        buf = NULL;
      }
      if (buf != NULL) {
        *data = buf;
        *len = e->len;
        *tier_out = OD_CACHE_DISK;
        lru_unlink(&c->t[OD_CACHE_DISK], e);
        lru_push_front(&c->t[OD_CACHE_DISK], e);
        mem_put(c, key, buf, e->len);
        hit = 1;
      } else {
        /* The file vanished or is short: forget it. */
        lru_unlink(&c->t[OD_CACHE_DISK], e);
        free(e);
        miss |= 1u << OD_CACHE_DISK;
      }
    } else {
      miss |= 1u << OD_CACHE_DISK;
    }
  }
  pthread_mutex_unlock(&c->mu);
  if (miss_tiers)
    *miss_tiers = miss;
  return hit;
}

void od_cache_put(od_cache *c, const uint8_t key[32], const uint8_t *data,
                  size_t len) {
  pthread_mutex_lock(&c->mu);
  mem_put(c, key, data, len);
  tier *t = &c->t[OD_CACHE_DISK];
  if (len <= t->bound && lookup(t, key) == NULL) {
    char path[PATH_MAX + 80];
    disk_path(c, key, path, sizeof path);
    entry *e = calloc(1, sizeof *e);
    if (e != NULL) {
      evict(c, OD_CACHE_DISK, len);
      if (od_file_write(path, data, len) == 0) {
        memcpy(e->key, key, 32);
        e->len = len;
        lru_push_front(t, e);
      } else {
        free(e);
      }
    }
  }
  pthread_mutex_unlock(&c->mu);
}

size_t od_cache_bytes(od_cache *c, od_cache_tier which) {
  pthread_mutex_lock(&c->mu);
  size_t n = c->t[which].bytes;
  pthread_mutex_unlock(&c->mu);
  return n;
}

size_t od_cache_entries(od_cache *c, od_cache_tier which) {
  pthread_mutex_lock(&c->mu);
  size_t n = c->t[which].count;
  pthread_mutex_unlock(&c->mu);
  return n;
}

/* ---- the result value ------------------------------------------------------
 * A 32-byte header, then the model, so a hit reports the same score as the
 * run that made it: "OQ1\0", 4 bytes of padding, the score (a double, host
 * order), the printable flag (byte 16), the two-letter grade (bytes 20-21). */

uint8_t *od_cache_result_pack(const orfeas_pl_result *res, size_t *len) {
  uint8_t *v = malloc(OD_CACHE_RESULT_HDR + res->file.size);
  if (v == NULL)
    return NULL;
  memset(v, 0, OD_CACHE_RESULT_HDR);
  memcpy(v, "OQ1", 4);
  memcpy(v + 8, &res->quality.score, sizeof(double));
  v[16] = (uint8_t)(res->quality.printable != 0);
  memcpy(v + 20, res->quality.grade, 3);
  memcpy(v + OD_CACHE_RESULT_HDR, res->file.data, res->file.size);
  *len = OD_CACHE_RESULT_HDR + res->file.size;
  return v;
}

int od_cache_result_unpack(const uint8_t *v, size_t len, double *score, char grade[3],
                           int *printable) {
  if (len < OD_CACHE_RESULT_HDR || memcmp(v, "OQ1", 4) != 0)
    return -1;
  memcpy(score, v + 8, sizeof(double));
  *printable = v[16];
  memcpy(grade, v + 20, 2);
  grade[2] = '\0';
  return 0;
}
