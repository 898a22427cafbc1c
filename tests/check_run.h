/*
 * check_run.h -- what every Check program's main() does: run one suite
 * and turn its failures into the exit status automake's harness reads.
 */
#ifndef ERRRELAY_CHECK_RUN_H
#define ERRRELAY_CHECK_RUN_H

#include <stdlib.h>

#include <check.h>

/* Run s (freed here); EXIT_SUCCESS when no test failed. */
static inline int
check_run(Suite *s)
{
	SRunner	*sr;
	int	 failed;

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
