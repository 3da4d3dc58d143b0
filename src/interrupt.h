/* interrupt.h -- SIGINT / SIGTERM turned into a flag that the run loop polls.
 *
 * Slurm (and a user's Ctrl-C) ask a job to stop with SIGTERM (SIGINT); the
 * handler only records the signal (no I/O, nothing that is not
 * async-signal-safe), and the loop that owns a run checks the flag once per
 * iteration: it writes a checkpoint and the metrics so far, then returns
 * UFM_EINTR, and main exits with status 128 + signal (130, 143). A second
 * signal while the first is being handled kills the process at once (the
 * default action), for a user who does not want to wait for the checkpoint.
 */
#ifndef UFM_INTERRUPT_H
#define UFM_INTERRUPT_H

#include <signal.h>

/* 0, or the number of the first signal received. */
extern volatile sig_atomic_t ufm_stop_signal;

/* Install the handler for SIGINT and SIGTERM, and ignore SIGXFSZ so that a
 * file-size limit (ulimit -f) makes write() fail with EFBIG, reported as an
 * I/O error, instead of killing the process. */
void ufm_interrupt_install(void);

/* Whether a stop has been requested. */
static inline int ufm_stop_requested(void) { return ufm_stop_signal != 0; }

/* "SIGINT", "SIGTERM" or "signal N". */
const char *ufm_signal_name(int sig);

#endif
