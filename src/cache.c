/* cache.c: the content-addressed result cache, two tiers.
 *
 * Key: 32 bytes, SHA-256 of the image's SHA-256 digest followed by every
 * generation parameter (jobs.c builds it). Value: a model and its quality
 * report (od_cache_meta), so a hit reports the same score as the run that
 * made it.
 *
 *   memory  an index of recent results (key, report, size); bounded by
 *           mem_bytes of the sizes it indexes; LRU. It holds a model's
 *           bytes only when the disk tier cannot (a model larger than the
 *           disk bound, or no disk tier): with the disk entry a link, a hit
 *           never reads the model, so keeping the bytes in memory as well
 *           would buy nothing, and the fresh memory they need costs page
 *           faults (expensive on a VM: docs/performance.md).
 *   disk    DIR/<hex key>.bin, a hard link to the model file the job wrote
 *           (so storing a result writes no second copy), and
 *           DIR/<hex key>.meta, its report and length; bounded by
 *           disk_bytes; LRU by an in-memory index, rebuilt at start-up from
 *           the folder (oldest modification time first). A pair that does
 *           not match (one half missing, a length that differs: a crash
 *           between the two writes) is removed at adoption, and so are the
 *           one-file entries of versions before this layout.
 *
 * A hit never copies a model either: the job's output file is made a hard
 * link to the disk entry (od_file_link: durable, since the job's record
 * will point at it); only an entry held in memory alone is written out.
 * Both tiers live in one doubly linked LRU list each, searched linearly by
 * key: the entry counts are small (a model is 0.1-80 MB, the bounds MBs to
 * GBs). All under one mutex: links are metadata operations, and the one
 * write (a memory-only hit) is rare.
 *
 * Cache files are not synced: a crash can lose an entry, never a job's
 * model (the job's own name for it was made durable first).
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
  uint8_t *data; /* memory tier, when the disk tier has no copy; owned */
  od_cache_meta meta;
  double stamp;              /* disk tier at adoption: mtime, for ordering */
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

/* The .meta file: "OQ2\0", the model's length (8 bytes), the score (a
 * double), printable (1 byte), the grade (2 bytes + NUL); host order. */
#define META_LEN 32

static void meta_pack(const od_cache_meta *m, size_t len,
                      uint8_t out[META_LEN]) {
  uint64_t l = len;
  memset(out, 0, META_LEN);
  memcpy(out, "OQ2", 4);
  memcpy(out + 4, &l, 8);
  memcpy(out + 12, &m->score, sizeof(double));
  out[20] = (uint8_t)(m->printable != 0);
  memcpy(out + 21, m->grade, 2);
}

static int meta_unpack(const uint8_t *v, size_t n, od_cache_meta *m,
                       size_t *len) {
  uint64_t l;
  if (n != META_LEN || memcmp(v, "OQ2", 4) != 0)
    return -1;
  memcpy(&l, v + 4, 8);
  *len = (size_t)l;
  memcpy(&m->score, v + 12, sizeof(double));
  m->printable = v[20];
  memcpy(m->grade, v + 21, 2);
  m->grade[2] = '\0';
  return 0;
}

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
    int v = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                   : -1;
    if (v < 0)
      return -1;
    if (i % 2 == 0)
      key[i / 2] = (uint8_t)(v << 4);
    else
      key[i / 2] |= (uint8_t)v;
  }
  return 0;
}

/* DIR/<hex>.bin (ext "bin") or DIR/<hex>.meta. */
static void disk_path(const od_cache *c, const uint8_t key[32], const char *ext,
                      char *out, size_t len) {
  char hx[65];
  hex_key(key, hx);
  snprintf(out, len, "%s/%s.%s", c->dir, hx, ext);
}

static void disk_unlink(const od_cache *c, const uint8_t key[32]) {
  char path[PATH_MAX + 80];
  disk_path(c, key, "bin", path, sizeof path);
  unlink(path);
  disk_path(c, key, "meta", path, sizeof path);
  unlink(path);
}

static void drop(od_cache *c, od_cache_tier which, entry *e) {
  lru_unlink(&c->t[which], e);
  if (which == OD_CACHE_DISK)
    disk_unlink(c, e->key);
  free(e->data);
  free(e);
}

static void evict(od_cache *c, od_cache_tier which, size_t need) {
  tier *t = &c->t[which];
  while (t->tail != NULL && t->bytes + need > t->bound)
    drop(c, which, t->tail);
}

static int cmp_stamp(const void *a, const void *b) {
  const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
  return (x->stamp > y->stamp) - (x->stamp < y->stamp);
}

/* The entry of DIR/<hex>.meta when its .bin matches it; NULL otherwise
 * (the caller removes the pair). */
static entry *adopt_one(od_cache *c, const char *name) {
  uint8_t key[32];
  if (strlen(name) != 69 || strcmp(name + 64, ".meta") != 0 ||
      unhex_key(name, key) != 0)
    return NULL;
  char path[PATH_MAX + 80];
  disk_path(c, key, "meta", path, sizeof path);
  size_t n = 0, len = 0;
  uint8_t *v = od_file_read(path, &n);
  od_cache_meta m;
  int ok = v != NULL && meta_unpack(v, n, &m, &len) == 0;
  free(v);
  struct stat st;
  disk_path(c, key, "bin", path, sizeof path);
  if (!ok || stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
      (size_t)st.st_size != len)
    return NULL;
  entry *e = calloc(1, sizeof *e);
  if (e != NULL) {
    memcpy(e->key, key, 32);
    e->len = len;
    e->meta = m;
    e->stamp = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
  }
  return e;
}

/* Adopts the complete entries, oldest first, so the newest are the most
 * recent in the LRU; removes what is not one (temporary files, halves of a
 * pair, old-layout entries) and what is past the bound. */
static int adopt_disk(od_cache *c, char *err, size_t err_len) {
  DIR *d = opendir(c->dir);
  if (d == NULL) {
    snprintf(err, err_len, "cache: cannot open %s: %s", c->dir,
             strerror(errno));
    return -1;
  }
  entry **found = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    entry *e = adopt_one(c, de->d_name);
    if (e == NULL) {
      /* A .bin is kept while its .meta may still be read (this loop). */
      size_t l = strlen(de->d_name);
      if (l < 4 || strcmp(de->d_name + l - 4, ".bin") != 0) {
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", c->dir, de->d_name);
        unlink(path);
      }
      continue;
    }
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      entry **g = realloc(found, nc * sizeof *g);
      if (g == NULL) {
        free(e);
        break;
      }
      found = g;
      cap = nc;
    }
    found[n++] = e;
  }
  closedir(d);
  if (n > 0)
    qsort(found, n, sizeof *found, cmp_stamp);
  for (size_t i = 0; i < n; i++) {
    evict(c, OD_CACHE_DISK, found[i]->len);
    if (found[i]->len > c->t[OD_CACHE_DISK].bound) {
      disk_unlink(c, found[i]->key);
      free(found[i]);
      continue;
    }
    lru_push_front(&c->t[OD_CACHE_DISK], found[i]);
  }
  free(found);
  /* .bin files no adopted entry owns (a .meta never written, or the
   * one-file layout of earlier versions). */
  if ((d = opendir(c->dir)) == NULL)
    return 0;
  while ((de = readdir(d)) != NULL) {
    uint8_t key[32];
    if (strlen(de->d_name) == 68 && strcmp(de->d_name + 64, ".bin") == 0 &&
        unhex_key(de->d_name, key) == 0 &&
        lookup(&c->t[OD_CACHE_DISK], key) == NULL) {
      char path[PATH_MAX + 300];
      snprintf(path, sizeof path, "%s/%s", c->dir, de->d_name);
      unlink(path);
    }
  }
  closedir(d);
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

/* Indexes a result in the memory tier (data: its bytes, taken; NULL when
 * the disk tier has them), evicting to make room. 0 when indexed (data
 * then belongs to the entry), -1 when not (too large, already there, out
 * of memory). Lock held. */
static int mem_index(od_cache *c, const uint8_t key[32],
                     const od_cache_meta *meta, size_t len, uint8_t *data) {
  tier *t = &c->t[OD_CACHE_MEMORY];
  entry *e;
  if (len > t->bound || lookup(t, key) != NULL ||
      (e = calloc(1, sizeof *e)) == NULL)
    return -1;
  memcpy(e->key, key, 32);
  e->data = data;
  e->len = len;
  e->meta = *meta;
  evict(c, OD_CACHE_MEMORY, len);
  lru_push_front(t, e);
  return 0;
}

/* Makes dest the model of a hit: a link to the disk entry when there is
 * one, else a write of the memory entry's bytes. Lock held. */
static int materialize(od_cache *c, const uint8_t key[32], entry *mem,
                       const char *dest, int durable) {
  entry *d = lookup(&c->t[OD_CACHE_DISK], key);
  if (d != NULL) {
    char path[PATH_MAX + 80];
    disk_path(c, key, "bin", path, sizeof path);
    if (od_file_link(path, dest, durable) == 0)
      return 0;
    /* The file went (a hand-made clean-up): forget the entry. */
    int e = errno;
    drop(c, OD_CACHE_DISK, d);
    errno = e;
  }
  if (mem != NULL && mem->data != NULL)
    return od_file_write_opt(dest, mem->data, mem->len, durable);
  if (mem != NULL) /* an index entry whose disk copy is gone */
    drop(c, OD_CACHE_MEMORY, mem);
  return -1;
}

int od_cache_get(od_cache *c, const uint8_t key[32], const char *dest,
                 int durable, od_cache_meta *meta, size_t *len,
                 od_cache_tier *tier_out, unsigned *miss_tiers) {
  unsigned miss = 0;
  int hit = 0;
  pthread_mutex_lock(&c->mu);
  entry *e = lookup(&c->t[OD_CACHE_MEMORY], key);
  od_cache_tier where = OD_CACHE_MEMORY;
  if (e == NULL) {
    miss |= 1u << OD_CACHE_MEMORY;
    where = OD_CACHE_DISK;
    if ((e = lookup(&c->t[OD_CACHE_DISK], key)) == NULL)
      miss |= 1u << OD_CACHE_DISK;
  }
  if (e != NULL) {
    *meta = e->meta;
    *len = e->len;
    *tier_out = where;
    lru_unlink(&c->t[where], e);
    lru_push_front(&c->t[where], e);
    hit = materialize(c, key, where == OD_CACHE_MEMORY ? e : NULL, dest,
                      durable) == 0
              ? 1
              : -1;
    if (hit < 0 && where == OD_CACHE_DISK)
      miss |= 1u << OD_CACHE_DISK; /* its file was gone */
    if (hit > 0 && where == OD_CACHE_DISK)
      mem_index(c, key, meta, *len, NULL); /* the next hit is memory's */
  }
  pthread_mutex_unlock(&c->mu);
  if (miss_tiers)
    *miss_tiers = miss;
  return hit;
}

void od_cache_put(od_cache *c, const uint8_t key[32], const od_cache_meta *meta,
                  uint8_t *model, size_t len, const char *path) {
  pthread_mutex_lock(&c->mu);
  tier *t = &c->t[OD_CACHE_DISK];
  entry *e = NULL;
  int on_disk = lookup(t, key) != NULL;
  if (!on_disk && path != NULL && len <= t->bound &&
      (e = calloc(1, sizeof *e)) != NULL) {
    char mp[PATH_MAX + 80], bp[PATH_MAX + 80];
    uint8_t mv[META_LEN];
    disk_path(c, key, "meta", mp, sizeof mp);
    disk_path(c, key, "bin", bp, sizeof bp);
    meta_pack(meta, len, mv);
    evict(c, OD_CACHE_DISK, len);
    if (od_file_write_opt(mp, mv, sizeof mv, 0) == 0 &&
        od_file_link(path, bp, 0) == 0) {
      memcpy(e->key, key, 32);
      e->len = len;
      e->meta = *meta;
      lru_push_front(t, e);
      on_disk = 1;
    } else {
      unlink(mp);
      free(e);
    }
  }
  /* The bytes stay in memory only where the disk has no copy. */
  if (mem_index(c, key, meta, len, on_disk ? NULL : model) == 0 && !on_disk)
    model = NULL; /* the entry owns it */
  free(model);
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
