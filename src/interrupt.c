/* interrupt.c -- the SIGINT / SIGTERM flag (see interrupt.h). */
#include "interrupt.h"

#include <stdio.h>
#include <string.h>

volatile sig_atomic_t ufm_stop_signal = 0;

static void on_stop(int sig)
{
  if (ufm_stop_signal) { /* asked twice: stop now, the default way */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  ufm_stop_signal = sig;
}

void ufm_interrupt_install(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  /* SA_RESTART: a signal arriving while ufm waits for gnuplot or sits in
   * a read/write must not turn that call into a spurious error */
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGXFSZ, SIG_IGN);
}

const char *ufm_signal_name(int sig)
{
  static char buf[32];
  if (sig == SIGINT) return "SIGINT";
  if (sig == SIGTERM) return "SIGTERM";
  snprintf(buf, sizeof buf, "signal %d", sig);
  return buf;
}
