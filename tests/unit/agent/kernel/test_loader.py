"""The checks that run before any probe is compiled, and their messages."""

import pytest

from taskscope.agent.kernel.loader import (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN,
                                           check_kernel_headers, check_privileges)
from taskscope.records.errors import DependencyError, PrivilegeError


def test_root_like_capabilities_pass():
    check_privileges(1 << CAP_SYS_ADMIN)
    check_privileges((1 << CAP_BPF) | (1 << CAP_PERFMON))


@pytest.mark.parametrize("caps, missing", [
    (0, "CAP_BPF and CAP_PERFMON"),
    (1 << CAP_BPF, "CAP_PERFMON"),
    (1 << CAP_PERFMON, "CAP_BPF"),
])
def test_missing_capabilities_are_named(caps, missing):
    with pytest.raises(PrivilegeError, match=f"needs {missing} \\(or CAP_SYS_ADMIN\\)"):
        check_privileges(caps)


def test_missing_headers_say_what_to_install(monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    with pytest.raises(DependencyError, match="install.sh.*linux-headers-0.0-none"):
        check_kernel_headers("0.0-none")
