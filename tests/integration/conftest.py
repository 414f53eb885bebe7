"""pytest set-up for the isvdd integration tests: the harness module sits
next to the tests; ISVDD (set by meson test) names the binary.

With ISVD_NO_SKIP=1 (scripts/test sets it) a skip is a failure: a test, or
a whole module, that skips because something it needs is missing reports
that as a failure with the skip's reason, so a missing program or module
cannot keep the suite green."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

NO_SKIP = os.environ.get("ISVD_NO_SKIP") == "1"

# A suite run by a service manager (CI under systemd) must not hand its
# notify socket, watchdog or journal stream to the daemons it starts;
# test_notify.py sets its own.
for _var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
    os.environ.pop(_var, None)


def _fail_skip(report, what):
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{what} skipped under ISVD_NO_SKIP=1: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip(outcome.get_result(), item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip(outcome.get_result(), collector.nodeid)
