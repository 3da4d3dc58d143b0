/* testutil.h -- what every ufm CMocka test includes first.
 *
 * CMocka needs <stdarg.h>, <stddef.h>, <setjmp.h> (and <stdint.h>) before
 * <cmocka.h>. Debian's CMocka 1.1.5 has no assert_double_equal, hence
 * assert_close(x, ref, rtol, atol): |x - ref| <= atol + rtol |ref|.
 */
#ifndef UFM_TESTUTIL_H
#define UFM_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#define assert_close(x, ref, rtol, atol)                                                 \
  do {                                                                                   \
    double ax_ = (double)(x), ar_ = (double)(ref);                                       \
    double tol_ = (double)(atol) + (double)(rtol) * fabs(ar_);                           \
    if (!(fabs(ax_ - ar_) <= tol_)) {                                                    \
      print_error("%s = %.17g, expected %s = %.17g (|diff| %.3g > tol %.3g)\n", #x, ax_, \
                  #ref, ar_, fabs(ax_ - ar_), tol_);                                     \
      _fail(__FILE__, __LINE__);                                                         \
    }                                                                                    \
  } while (0)

#ifdef UFM_TEST_TMPDIR
/* A scratch directory for a test group (define UFM_TEST_TMPDIR before
 * including this file): tmpdir_setup / tmpdir_teardown as CMocka group
 * fixtures; the directory and all it holds go at the end. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[64];

static inline int tmpdir_setup(void **state)
{
  (void)state;
  strcpy(tmpdir, "/tmp/ufm-test-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static inline int tmpdir_teardown(void **state)
{
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}
#endif

#endif
