"""Pod metadata from recorded API replies and real cgroup path shapes."""

import http.client
import json
import os
import urllib.parse
import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskscope.agent.host.kubernetes import (DELETED_GRACE, ApiClient, PodMetadata, index_pods,
                                             parse_cgroup_path)
from tests.fake_http import serving

with open(os.path.join(os.path.dirname(__file__), "data", "kubernetes_api.json")) as f:
    RECORDED = json.load(f)
# Keys a pod object has, so that generated objects get past the first lookups.
KEYS = ["metadata", "spec", "status", "name", "namespace", "uid", "ownerReferences", "kind",
        "controller", "labels", "containerStatuses", "containerID", "podIPs", "ip", "env",
        "containers", "value", "nodeName", "hostNetwork"]
A, C, E = "a" * 64, "c" * 64, "e" * 64
UID = "0f3c2a7e-1b2d-4c5e-8f90-a1b2c3d4e5f6"


@pytest.mark.parametrize("path, expected", [
    # cgroup v2, systemd driver: containerd, cri-o, docker
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}"
     f".slice/cri-containerd-{A}.scope", (UID, A)),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{A}.scope", (UID, A)),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
     f"{UID.replace('-', '_')}.slice/docker-{A}.scope", (UID, A)),
    # cgroupfs driver (v1 or v2): docker/containerd, cri-o; guaranteed pods have no QoS level
    (f"/kubepods/burstable/pod{UID}/{A}", (UID, A)),
    (f"/kubepods/besteffort/pod{UID}/crio-{A}", (UID, A)),
    (f"/kubepods/pod{UID}/{A}", (UID, A)),
    # the pod's own cgroup, and cri-o's monitor: the pod, no container
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice", (UID, None)),
    (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-conmon-{A}.scope",
     (UID, None)),
    # not Kubernetes
    (f"/system.slice/docker-{A}.scope", (None, A)),
    ("/system.slice/nginx.service", (None, None)),
    (None, (None, None)),
])
def test_cgroup_path_shapes(path, expected):
    assert parse_cgroup_path(path) == expected


def owner_lookup(namespace, kind, name):
    reply = RECORDED.get(f"{namespace}/{kind.lower()}s/{name}")
    refs = reply["metadata"]["ownerReferences"] if reply else []
    return next(((r["kind"], r["name"]) for r in refs if r.get("controller")), None)


def test_recorded_pod_list_indexes_every_container_with_its_workload():
    containers, pods = index_pods(RECORDED["pods"], owner_lookup)
    checkout = containers[A]
    assert (checkout.namespace, checkout.pod, checkout.container, checkout.node) == (
        "shop", "checkout-7d4b9c5f6-x2x9z", "app", "node-a")
    assert (checkout.workload_kind, checkout.workload, checkout.service) == (
        "Deployment", "checkout", "shop/checkout")
    assert containers["b" * 64].container == "envoy"
    # The container's spec names it: that wins over the workload.
    assert containers[C].service == "cart-postgres" and containers[C].workload == "cart-db"
    # A CronJob's Job is asked of the API; init containers count too.
    assert containers[E].service == "billing/invoice-sweep"
    assert containers["d" * 64].container == "migrate"
    # A bare pod is its own workload; a container without an id is skipped.
    assert pods["33333333-4444-5555-6666-777777777777"].service == "default/debug-shell"
    assert set(containers) == {A, "b" * 64, C, "d" * 64, E, "f" * 64}


def test_without_the_owner_api_a_jobs_pods_belong_to_the_job():
    containers, _ = index_pods(RECORDED["pods"])
    assert containers[E].service == "billing/invoice-sweep-28912345"


class RecordedApi:
    base_url = "recorded"

    def __init__(self, replies):
        self.replies, self.paths = replies, []

    def get(self, path):
        self.paths.append(path)
        if path.startswith("/api/v1/pods"):
            return self.replies["pods"]
        if path.startswith("/apis/batch/v1/namespaces/billing/jobs/"):
            return self.replies["billing/jobs/invoice-sweep-28912345"]
        raise OSError("404")


def test_pod_metadata_asks_for_this_nodes_pods_and_resolves_cgroups():
    api = RecordedApi(RECORDED)
    pods = PodMetadata(api, "node-a")
    assert pods.refresh()
    assert api.paths[0] == "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a&limit=500"
    meta = pods.of_cgroup_path(f"/kubepods/burstable/pod{UID}/{A}")
    assert meta.service == "shop/checkout" and meta.labels()["pod"] == "checkout-7d4b9c5f6-x2x9z"
    assert pods.of_cgroup_path("/system.slice/sshd.service") is None
    assert pods.of_cgroup_path(f"/kubepods/besteffort/pod{UID}/{'9' * 64}").container == ""


@pytest.mark.parametrize("reply", [[], "nope", {"items": "nope"}, {"items": [None, 7]}])
def test_garbage_from_the_api_is_survived(reply):
    pods = PodMetadata(RecordedApi({"pods": reply}), "node-a")
    pods.refresh()
    assert pods.of_cgroup_path(f"/kubepods/pod{UID}/{A}") is None


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5), max_leaves=30)


@given(st.dictionaries(st.just("items"), st.lists(JSON, max_size=4)))
def test_any_json_shaped_pod_list_is_indexed_or_skipped(pod_list):
    containers, pods = index_pods(pod_list)
    for meta in [*containers.values(), *pods.values()]:
        assert all(isinstance(v, str) for v in (*meta.labels().values(), meta.service))


class PagedApi:
    """An API server that hands the pod list out one pod per page."""

    def __init__(self, pods):
        self.pods, self.paths = pods, []

    def get(self, path):
        self.paths.append(path)
        if not path.startswith("/api/v1/pods"):
            raise OSError("404")  # no owner API here
        query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
        at = int(query.get("continue", ["0"])[0])
        cont = str(at + 1) if at + 1 < len(self.pods) else ""
        return {"metadata": {"continue": cont}, "items": [self.pods[at]]}


def test_the_pod_list_is_read_page_by_page():
    pods = RECORDED["pods"]["items"]
    api = PagedApi(pods)
    meta = PodMetadata(api, "node-a")
    assert meta.refresh()
    listed = [p for p in api.paths if p.startswith("/api/v1/pods")]
    assert len(listed) == len(pods) and "limit=500" in listed[0]
    assert "continue=" in listed[-1]
    assert meta.of_cgroup_path(f"/kubepods/burstable/pod{UID}/{A}").service == "shop/checkout"


def test_the_service_account_token_is_read_again_as_it_rotates(tmp_path):
    token = tmp_path / "token"
    token.write_text("first\n")
    seen = []

    with serving(lambda path: seen.append(path) or b'{"items": []}') as url:
        client = ApiClient(url, token_file=str(token))
        headers = []
        real = urllib.request.urlopen

        def spy(request, **kw):
            headers.append(request.get_header("Authorization"))
            return real(request, **kw)

        urllib.request.urlopen, saved = spy, urllib.request.urlopen
        try:
            client.get("/api/v1/pods")
            token.write_text("second\n")
            client.get("/api/v1/pods")  # within TOKEN_REREAD: the same token
            client._token_read_at -= ApiClient.TOKEN_REREAD
            client.get("/api/v1/pods")
        finally:
            urllib.request.urlopen = saved
    assert headers == ["Bearer first", "Bearer first", "Bearer second"]


def test_http_errors_of_the_api_are_failures_not_crashes():
    class Broken:
        base_url = "http://api"

        def get(self, path):
            raise http.client.IncompleteRead(b"{")

    meta = PodMetadata(Broken(), "node-a")
    assert not meta.refresh() and meta.failures == 1


class WatchApi(RecordedApi):
    """The recorded pod list at resourceVersion 10, then scripted watch lines."""

    def __init__(self, replies, lines):
        super().__init__(replies)
        self.lines, self.streamed = lines, []

    def get(self, path):
        reply = super().get(path)
        if path.startswith("/api/v1/pods"):
            reply = dict(reply, metadata={"resourceVersion": "10"})
        return reply

    def stream(self, path, read_timeout):
        self.streamed.append(path)
        yield from self.lines


def pod_event(kind, pod, version):
    pod = json.loads(json.dumps(pod))
    pod["metadata"]["resourceVersion"] = version
    return (json.dumps({"type": kind, "object": pod}) + "\n").encode()


class Stop:
    def is_set(self):
        return False


def test_the_watch_adds_changes_and_deletes_pods_from_the_lists_version():
    first = RECORDED["pods"]["items"][0]
    uid = first["metadata"]["uid"]
    added = json.loads(json.dumps(first))
    added["metadata"].update(uid="11111111-2222-3333-4444-555555555555", name="checkout-new")
    fresh = "9" * 64
    added["status"]["containerStatuses"] = [{"name": "app", "containerID": "containerd://" + fresh}]
    lines = [pod_event("ADDED", added, "11"), b"\n", pod_event("DELETED", first, "12"),
             (json.dumps({"type": "BOOKMARK", "object": {"metadata": {
                 "resourceVersion": "15"}}}) + "\n").encode()]
    api = WatchApi(RECORDED, lines)
    pods = PodMetadata(api, "node-a")
    assert pods.refresh() and pods.version == "10"
    assert pods.of_cgroup_path(f"/kubepods/pod{uid}") is not None
    assert pods.watch(pods.version, Stop()) == "15"
    assert "watch=1" in api.streamed[0] and "resourceVersion=10" in api.streamed[0]
    assert "fieldSelector=spec.nodeName%3Dnode-a" in api.streamed[0]
    new_uid = added["metadata"]["uid"]
    assert pods.of_cgroup_path(f"/kubepods/pod{new_uid}/{fresh}").pod == "checkout-new"
    # A deleted pod stays known for DELETED_GRACE: its last samples keep its labels.
    assert pods.of_cgroup_path(f"/kubepods/pod{uid}") is not None
    pods._deleted[uid] = (pods._deleted[uid][0] - DELETED_GRACE - 1, pods._deleted[uid][1])
    pods._index()
    assert pods.of_cgroup_path(f"/kubepods/pod{uid}") is None


@pytest.mark.parametrize("line", [
    b'{"type": "ERROR", "object": {"kind": "Status", "code": 410}}\n',  # version too old
    b"not json\n", b"[1, 2]\n", b'{"type": "ADDED", "object": 3}\n'])
def test_an_expired_or_garbled_watch_lists_again(line):
    api = WatchApi(RECORDED, [line])
    pods = PodMetadata(api, "node-a")
    assert pods.refresh()
    before = dict(pods._containers)
    assert pods.watch(pods.version, Stop()) is None
    assert pods._containers == before


def verb_of(path):
    """(api group, resource, verb) a request path needs."""
    path, _, query = path.partition("?")
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[0] == "namespaces":
        rest = rest[2:]
    if len(rest) == 2:
        return group, rest[0], "get"
    return group, rest[0], "watch" if "watch=1" in query else "list"


def test_rbac_grants_exactly_the_verbs_the_agent_uses():
    import yaml  # PyYAML: a dependency of the agent (its config)
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "deploy",
                           "kubernetes", "rbac.yaml")) as f:
        role = next(d for d in yaml.safe_load_all(f) if d["kind"] == "ClusterRole")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    # A bare ReplicaSet's pod (no pod-template-hash to name a Deployment by)
    # makes the agent ask for its owner, as a Job's pod does.
    bare = json.loads(json.dumps(RECORDED["pods"]["items"][0]))
    bare["metadata"].update(uid="66666666-2222-3333-4444-555555555555", labels={},
                            ownerReferences=[{"kind": "ReplicaSet", "name": "bare-rs",
                                              "controller": True}])
    api = WatchApi(RECORDED, [pod_event("ADDED", bare, "11")])
    pods = PodMetadata(api, "node-a")
    assert pods.refresh()
    pods.watch(pods.version, Stop())
    used = {verb_of(p) for p in api.paths + api.streamed}
    assert used == granted, (sorted(used), sorted(granted))
