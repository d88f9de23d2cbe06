import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskscope.agent.host.services import (MAX_SERVICE_NAME, ServiceResolver, clean_name,
                                            normalize_comm,
                                           service_from_cgroup_path)
from taskscope.agent.kernel_abi import IdentKind

CID = "4f6b1c1e0b8a5f7e9d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e"


@pytest.mark.parametrize("path, service", [
    ("/system.slice/shop-payment.service", "shop-payment"),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/orders.service", "orders"),
    ("/system.slice/docker-%s.scope" % CID, CID[:12]),
    ("/docker/%s" % CID, CID[:12]),
    ("/kubepods/burstable/pod1234-5678/%s" % CID, CID[:12]),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podab_cd.slice/"
     "cri-containerd-%s.scope" % CID, CID[:12]),
    ("/kubepods.slice/kubepods-pod1.slice/crio-%s.scope" % CID, CID[:12]),
    ("/machine.slice/libpod-%s.scope" % CID, CID[:12]),
    ("/user.slice/user-0.slice/session-3.scope", None),
    ("/", None),
    ("", None),
    (None, None),
    ("/.service", None),
])
def test_service_from_cgroup_path(path, service):
    assert service_from_cgroup_path(path) == service


@given(st.text())
def test_cgroup_path_parser_never_raises(path):
    result = service_from_cgroup_path(path)
    assert result is None or isinstance(result, str) and result


@pytest.mark.parametrize("comm, name", [
    ("nginx", "nginx"), ("kworker/u8:0", "kworker"), ("ksoftirqd/1", "ksoftirqd"), ("", "unknown"),
])
def test_normalize_comm(comm, name):
    assert normalize_comm(comm) == name


class Paths:
    def __init__(self, paths):
        self.paths = paths

    def path(self, cgroup_id):
        return self.paths.get(cgroup_id)


NAMES = {1: (IdentKind.OTEL, "payment"), 2: (IdentKind.COMM, "python3"),
         3: (IdentKind.COMM, "kworker/0:1")}
PATHS = {1: "/", 50: "/system.slice/inventory.service", 60: "/user.slice"}


@pytest.mark.parametrize("cgroup, ident, service", [
    (50, 1, "payment"),                     # environment beats unit
    (50, 2, "inventory"),                   # unit beats comm
    (60, 2, "python3"),                     # comm when the cgroup says nothing
    (1, 3, "kworker"),
    (999, 2, "python3"),                    # cgroup gone: comm still names it
    (999, 77, "unknown_cgroup:999"),        # nothing decodes: visible placeholder
    (60, 77, "unknown_identity:4d"),
    (0, 0, "unknown"),                      # an owner the kernel never learned
])
def test_resolver_precedence_and_placeholders(cgroup, ident, service):
    resolver = ServiceResolver(NAMES.get, Paths(PATHS))
    assert resolver.resolve(cgroup, ident) == service


def test_resolver_counts_decode_errors():
    resolver = ServiceResolver(NAMES.get, Paths(PATHS))
    resolver.resolve(999, 77)
    assert resolver.decode_errors == {"identity": 1, "cgroup": 1}




@pytest.mark.parametrize("raw, clean", [
    (b"orders", "orders"),
    ('a"quoted"\\name', 'a"quoted"\\name'),           # escaped by every output, kept
    ("line\nbreak\ttab\x7f", "linebreaktab"),            # control characters go
    (b"caf\xe9-\xff", "caf\ufffd-\ufffd"),                # invalid UTF-8 replaced
    ("x\udcff.service", "x\ufffd.service"),               # os.fsdecode's escapes too
    ("lone\ud800", "lone\ufffd"),
    ("", "unknown"), ("\n\t", "unknown"),
    ("n" * 1024, "n" * MAX_SERVICE_NAME),
])
def test_clean_name(raw, clean):
    assert clean_name(raw) == clean


@given(st.one_of(st.binary(max_size=2048), st.text(max_size=2048)))
def test_any_name_becomes_encodable_short_and_free_of_control_characters(raw):
    name = clean_name(raw)
    name.encode("utf-8")  # never raises
    assert 0 < len(name) <= MAX_SERVICE_NAME
    assert not any(ord(c) < 32 or ord(c) == 127 for c in name)
