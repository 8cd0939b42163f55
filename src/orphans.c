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
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs_internal.h"

#define ORPHAN_BATCH 1000 /* removals per pass: the rest wait a pass */

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

/* One folder; -1 when the store stopped answering (the pass ends). */
static int sweep_dir(od_jobs *j, const char *dir, int which, double older,
                     int *budget, uint64_t *bytes) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return 0;
  int rc = 0;
  struct dirent *de;
  while (*budget > 0 && (de = readdir(d)) != NULL) {
    struct stat st;
    char id[37];
    if (de->d_name[0] == '.' ||
        fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode) || od_orphan_time(&st) > older)
      continue;
    if (!id_of(de->d_name, id))
      continue; /* not a name of ours (ours carry a job id, .tmp too) */
    if (!is_tmp(de->d_name)) {
      od_job_rec r;
      od_store_rc got = od_store_get(j->store, id, &r);
      if (got == OD_STORE_OK)
        continue;
      if (got != OD_STORE_NOT_FOUND && got != OD_STORE_GONE) {
        rc = -1;
        break;
      }
    }
    if (unlinkat(dirfd(d), de->d_name, 0) == 0) {
      (*budget)--;
      *bytes += (uint64_t)st.st_size;
      om_counter_inc(j->orphans_removed[which]);
    }
  }
  closedir(d);
  return rc;
}

void od_jobs_sweep_orphans(od_jobs *j) {
  double older = od_wall() - j->svc->cfg.orphan_age_s;
  /* Test hook (never set in production): the sweep takes every file as
   * this many seconds older than it is. A file's ctime cannot be set back,
   * so a test cannot make a file old by utime() alone. */
  const char *ahead = getenv("ORFEAS_TEST_ORPHAN_AHEAD_S");
  if (ahead != NULL)
    older += atof(ahead);
  int budget = ORPHAN_BATCH;
  uint64_t bytes = 0;
  if (sweep_dir(j, j->dir_uploads, 0, older, &budget, &bytes) == 0)
    sweep_dir(j, j->dir_outputs, 1, older, &budget, &bytes);
  int removed = ORPHAN_BATCH - budget;
  if (removed > 0)
    od_log("orphans: removed %d file(s) no job owns, older than "
           "--orphan-age %gs (%llu bytes)%s",
           removed, j->svc->cfg.orphan_age_s, (unsigned long long)bytes,
           budget == 0 ? "; more next pass" : "");
}
