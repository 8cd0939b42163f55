/* orphans.c: files on a shared data dir that no job owns (cluster mode).
 *
 * With the sqlite store nothing else writes in the data dir, so start-up
 * removes every file no record owns (recover.c). With a shared store
 * (redis://) the data dir is shared too, and a file no record owns yet may
 * be another node's upload whose record is being written (the file is made
 * durable before the record that points at it commits): nothing can be
 * removed on sight. Without a sweep, what a node leaves when it dies
 * between a file and its record (an upload, a model's PATH.tmp, the files
 * of a removed job when it died between the record and the files) would
 * stay on the shared disk forever, outside --max-store-mb's count.
 *
 * So the janitor of every node sweeps uploads/ and outputs/ now and then
 * (od_jobs_sweep_orphans): a file is removed when it is older than
 * --orphan-age (no write takes that long between a file and its record)
 * and either is a PATH.tmp or names a job the store does not hold (or
 * holds only as a tombstone: the job was removed). A file's age counts
 * from the later of its mtime and its ctime (od_orphan_time): a name made
 * by link() and rename() (an upload of bytes stored before, jobs.c's
 * link_same_upload; a cache hit's model, od_file_link) carries the old
 * file's mtime, and only its ctime says it was made just now, maybe
 * between its rename and its record's insert. A file whose job exists
 * is kept whatever it is, and so is a name that is not ORFEAS' (no UUID in
 * it). Several nodes sweeping at once is harmless: an unlink that finds
 * nothing is not counted. Counted in orfeas_orphan_files_removed_total.
 *
 * A sweep is read a slice at a time (ORPHAN_SLICE names a call, its
 * folder's stream kept open between calls): the janitor calls it once a
 * second until it is through, and between slices does its other work
 * (the store and data-dir probes behind /ready, expiry). In one call a
 * mount of 200k files would hold the janitor for the whole walk (an
 * fstatat each, and a store lookup for each old file), with /ready and
 * orfeas_store_up frozen meanwhile.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs_internal.h"

#define ORPHAN_BATCH 1000 /* removals per sweep: the rest wait a sweep */
#define ORPHAN_SLICE 500  /* names read per call */

/* The job id a data-dir file name carries ("ID.EXT", "model_ID.FMT", each
 * maybe + ".tmp") into id; 0 when there is none. */
static int id_of(const char *name, char id[37]) {
  const char *p = strncmp(name, "model_", 6) == 0 ? name + 6 : name;
  if (strlen(p) < 36 || p[36] != '.')
    return 0;
  memcpy(id, p, 36);
  id[36] = '\0';
  return od_uuid_valid(id);
}

double od_orphan_time(const struct stat *st) {
  return st->st_ctime > st->st_mtime ? (double)st->st_ctime
                                     : (double)st->st_mtime;
}

static int is_tmp(const char *name) {
  size_t n = strlen(name);
  return n > 4 && strcmp(name + n - 4, ".tmp") == 0;
}

/* Up to *slice names of the folder being read; 1 when it is read to its
 * end, 0 when the slice ran out first, -1 when the store stopped answering
 * (the sweep ends). */
static int sweep_slice(od_jobs *j, int *slice) {
  od_orphan_sweep *w = &j->orphans;
  struct dirent *de;
  while (w->budget > 0 && (*slice)-- > 0) {
    if ((de = readdir(w->dir)) == NULL)
      return 1;
    struct stat st;
    char id[37];
    if (de->d_name[0] == '.' ||
        fstatat(dirfd(w->dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode) || od_orphan_time(&st) > w->older)
      continue;
    if (!id_of(de->d_name, id))
      continue; /* not a name of ours (ours carry a job id, .tmp too) */
    if (!is_tmp(de->d_name)) {
      od_job_rec r;
      od_store_rc got = od_store_get(j->store, id, &r);
      if (got == OD_STORE_OK)
        continue;
      if (got != OD_STORE_NOT_FOUND && got != OD_STORE_GONE)
        return -1;
    }
    if (unlinkat(dirfd(w->dir), de->d_name, 0) == 0) {
      w->budget--;
      w->bytes += (uint64_t)st.st_size;
      om_counter_inc(j->orphans_removed[w->which]);
    }
  }
  return w->budget > 0 ? 0 : 1;
}

static void sweep_end(od_jobs *j) {
  od_orphan_sweep *w = &j->orphans;
  if (w->dir != NULL)
    closedir(w->dir);
  w->dir = NULL;
  w->running = 0;
  int removed = ORPHAN_BATCH - w->budget;
  if (removed > 0)
    od_log("orphans: removed %d file(s) no job owns, older than "
           "--orphan-age %gs (%llu bytes)%s",
           removed, j->svc->cfg.orphan_age_s, (unsigned long long)w->bytes,
           w->budget == 0 ? "; more next sweep" : "");
}

int od_jobs_sweep_orphans(od_jobs *j) {
  od_orphan_sweep *w = &j->orphans;
  if (!w->running) {
    w->running = 1;
    w->which = -1;
    w->budget = ORPHAN_BATCH;
    w->bytes = 0;
    w->older = od_wall() - j->svc->cfg.orphan_age_s;
    /* Test hook (never set in production): the sweep takes every file as
     * this many seconds older than it is. A file's ctime cannot be set
     * back, so a test cannot make a file old by utime() alone. */
    const char *ahead = getenv("ORFEAS_TEST_ORPHAN_AHEAD_S");
    if (ahead != NULL)
      w->older += atof(ahead);
  }
  int slice = ORPHAN_SLICE;
  while (slice > 0) {
    if (w->dir == NULL) { /* the next folder: uploads/, then outputs/ */
      if (++w->which > 1 || w->budget == 0) {
        sweep_end(j);
        return 0;
      }
      w->dir = opendir(w->which == 0 ? j->dir_uploads : j->dir_outputs);
      if (w->dir == NULL)
        continue;
    }
    int rc = sweep_slice(j, &slice);
    if (rc < 0) {
      sweep_end(j);
      return 0;
    }
    if (rc > 0) {
      closedir(w->dir);
      w->dir = NULL;
    }
  }
  return 1;
}

void od_jobs_sweep_orphans_stop(od_jobs *j) {
  if (j->orphans.running)
    sweep_end(j);
}
