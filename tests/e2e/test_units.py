"""The systemd unit is accepted by systemd's own checker."""

import os

from tests.e2e.agent_process import REPO
from tests.e2e.workloads import sh


def test_agent_unit_verifies():
    unit = os.path.join(REPO, "systemd", "taskscope-agent.service")
    result = sh("systemd-analyze", "verify", unit, check=False)
    assert result.returncode == 0, result.stderr
