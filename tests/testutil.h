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

#endif
