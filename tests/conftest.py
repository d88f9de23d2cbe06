"""Suite-wide rules: hypothesis tolerates a loaded machine; and the
end-to-end tests are the point, so CI must fail when every one of them was
skipped (say, because the runner was not root)."""

import os

from hypothesis import HealthCheck, settings

# A busy CI machine (BPF programs compiling, load generators) can make one
# example slow: that is not a failure of the code under test.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

_E2E = {"collected": 0, "skipped": 0}


def pytest_collection_modifyitems(items):
    _E2E["collected"] = sum(1 for item in items if "e2e" in item.keywords)


def pytest_runtest_logreport(report):
    if "e2e" in report.keywords and report.skipped:
        _E2E["skipped"] += 1


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") and _E2E["collected"] and _E2E["skipped"] >= _E2E["collected"]:
        print("\nCI: every end-to-end test was skipped; failing the run")
        session.exitstatus = 1
