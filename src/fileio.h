/* fileio.h -- atomic file output: every result file is written whole or not at all. */
#ifndef UFM_FILEIO_H
#define UFM_FILEIO_H

#include <stdio.h>

/* An output file being written under a temporary name beside its final path. */
typedef struct {
  FILE *fp;
  char *path;    /* final name */
  char *tmppath; /* path.tmp.<pid> */
} ufm_afile;

/* Open path's temporary twin for writing ("wb"). Returns UFM_OK or UFM_EIO. */
int ufm_afile_open(ufm_afile *af, const char *path, char *errbuf);

/* ufm_afile_open on dir/name. */
int ufm_afile_open_in(ufm_afile *af, const char *dir, const char *name, char *errbuf);

/* Flush, check for write errors, close and rename onto the final path.
 * On any failure the temporary file is removed and UFM_EIO returned; the
 * previous content of path (if any) is untouched. Always releases af. */
int ufm_afile_commit(ufm_afile *af, char *errbuf);

/* Give up: close and remove the temporary file. */
void ufm_afile_abort(ufm_afile *af);

/* mkdir -p; UFM_OK or UFM_EIO. */
int ufm_mkdirs(const char *path, char *errbuf);

/* Join dir and name into a newly allocated string. */
char *ufm_path_join(const char *dir, const char *name);

/* Remove a directory of regular files (a checkpoint) and the directory
 * itself; a missing directory is fine. 0, or -1 with errno. */
int ufm_remove_dir(const char *path);

/* fsync a directory, so that renames inside it survive a crash (best effort:
 * some file systems refuse to sync directories). */
void ufm_fsync_dir(const char *path);

/* Remove the temporary files (NAME.tmp.PID) that killed processes left in
 * dir; only for run directories, which one process writes at a time. */
void ufm_remove_stale_tmp(const char *dir);

/* The policy for output directories (`out`): NULL when path is acceptable,
 * else what is wrong with it. Refused: an empty path, control characters
 * (they garble messages and file listings), and `..` components (an output
 * path must not climb out of the directory it names; write an absolute path
 * instead). */
const char *ufm_out_path_problem(const char *path);

/* Whether dir exists, holds entries, and none of them marks a ufm run or
 * sweep (config.ini, sweep.ini, metrics.tsv): such a directory belongs to
 * someone else and is never written into, even with --force. Temporary
 * files (NAME.tmp.PID) and checkpoints count as ufm's. */
int ufm_dir_is_foreign(const char *dir);

/* s quoted for a POSIX shell when it needs quoting (for messages that tell
 * the user a command to run); newly allocated. */
char *ufm_shell_quote(const char *s);

#endif
