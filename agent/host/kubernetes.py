"""Pod metadata: which pod, container and workload a cgroup belongs to.

The kernel reports cgroup ids; their paths name the container (every
runtime puts its id in the leaf) and, under the kubelet, the pod's uid.
The pods of this node, listed from the API server (page by page) and then
kept current by a watch from the list's resourceVersion (relisting when the
API says it is too old), map container ids to namespace, pod, container and
owning workload.  A workload's name is the service name, as "namespace/workload",
unless the container's spec sets OTEL_SERVICE_NAME.
"""

import functools
import http.client
import json
import logging
import os
import re
import ssl
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
LABELS = ("namespace", "pod", "container", "node")
MAX_REPLY_BYTES = 64 << 20

# The leaf of a container's cgroup, for every runtime and cgroup driver:
#   systemd driver:  cri-containerd-<id>.scope, crio-<id>.scope, docker-<id>.scope
#   cgroupfs driver: <id>, crio-<id>
# crio-conmon-<id> is the runtime's monitor process, not the container.
_CONTAINER_LEAF = re.compile(
    r"^(?:(?:cri-containerd|crio|docker|containerd|libpod)-)?([0-9a-f]{64})(?:\.scope)?$")
# kubepods-burstable-pod<uid with _>.slice (systemd) or pod<uid with ->
_POD_DIR = re.compile(r"(?:^|-)pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}"
                      r"[-_][0-9a-f]{12})(?:\.slice)?$")
_RUNTIME_PREFIX = re.compile(r"^[a-z-]+://")


@functools.lru_cache(maxsize=8192)
def parse_cgroup_path(path):
    """(pod uid or None, container id or None) of a cgroup path.  Cached: a
    scrape asks it for the service and again for the pod labels of each row."""
    pod_uid = container_id = None
    for part in (path or "").strip("/").split("/"):
        pod = _POD_DIR.search(part)
        if pod:
            pod_uid = pod.group(1).replace("_", "-")
        leaf = _CONTAINER_LEAF.match(part)
        if leaf:
            container_id = leaf.group(1)
    return pod_uid, container_id


@dataclass(frozen=True)
class ContainerMeta:
    namespace: str
    pod: str
    container: str
    node: str
    workload_kind: str
    workload: str
    otel_service_name: str = ""

    @property
    def service(self):
        return self.otel_service_name or f"{self.namespace}/{self.workload}"

    def labels(self):
        return {"namespace": self.namespace, "pod": self.pod, "container": self.container,
                "node": self.node}


def _controller(metadata):
    for ref in metadata.get("ownerReferences") or ():
        if ref.get("controller"):
            return ref.get("kind", ""), ref.get("name", "")
    return None


def workload_of(pod, owner_of=None):
    """(kind, name) of the workload that owns `pod` (a pod object).

    ReplicaSets are named <deployment>-<pod-template-hash>, and the pod carries
    the hash as a label, so no lookup is needed for Deployments.  A Job's
    CronJob is asked of `owner_of(namespace, kind, name)` (the API), when
    given; without an answer the Job is the workload.
    """
    metadata = pod.get("metadata", {})
    controller = _controller(metadata)
    if not controller:
        return "Pod", metadata.get("name", "")
    kind, name = controller
    if kind == "ReplicaSet":
        template_hash = (metadata.get("labels") or {}).get("pod-template-hash")
        if template_hash and name.endswith("-" + template_hash):
            return "Deployment", name[: -len(template_hash) - 1]
    if kind in ("ReplicaSet", "Job") and owner_of:
        parent = owner_of(metadata.get("namespace", ""), kind, name)
        if parent:
            return parent
    return kind, name


def _otel_service_names(spec):
    """{container name: literal OTEL_SERVICE_NAME in its spec}."""
    names = {}
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(group) or ():
            for env in container.get("env") or ():
                if env.get("name") == "OTEL_SERVICE_NAME" and isinstance(env.get("value"), str):
                    names[container.get("name", "")] = env["value"]
    return names


def _require_strings(*values):
    if not all(isinstance(v, str) for v in values):
        raise TypeError("a name or id is not a string")


def index_pods(pod_list, owner_of=None):
    """({container id: ContainerMeta}, {pod uid: ContainerMeta of its pod}) from
    a PodList object.  Malformed items are skipped and logged."""
    containers, pods = {}, {}
    for pod in pod_list.get("items") or ():
        try:
            metadata, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
            kind, workload = workload_of(pod, owner_of)
            otel = _otel_service_names(spec)
            base = dict(namespace=metadata["namespace"], pod=metadata["name"],
                        node=spec.get("nodeName", ""), workload_kind=kind, workload=workload)
            _require_strings(metadata["uid"], *base.values())
            pods[metadata["uid"]] = ContainerMeta(container="", **base)
            for group in ("initContainerStatuses", "containerStatuses",
                          "ephemeralContainerStatuses"):
                for cs in status.get(group) or ():
                    cid, name = cs.get("containerID") or "", cs.get("name", "")
                    _require_strings(cid, name)
                    cid = _RUNTIME_PREFIX.sub("", cid)
                    if cid:
                        containers[cid] = ContainerMeta(
                            container=name, otel_service_name=otel.get(name, ""), **base)
        except (KeyError, TypeError, AttributeError) as exc:
            log.warning("skipping a malformed pod in the API's reply: %r", exc)
    return containers, pods


# Whatever the API (or what answers in its place) can do to a client.
API_ERRORS = (OSError, ValueError, http.client.HTTPException)
PAGE_SIZE = 500
MAX_PAGES = 100  # 50,000 pods: more than a node holds
WATCH_SECONDS = 300  # the API ends a watch after this; it is then resumed
# A deleted pod stays known this long (at most MAX_DELETED of them): its
# processes' last samples are named, and folded (agent/reclaim.py), after it.
DELETED_GRACE = 600.0
MAX_DELETED = 4096
MAX_EVENT_BYTES = 4 << 20  # one watch event (a pod) larger than this is refused


class ApiClient:
    """Just enough of the Kubernetes API: GET a path, as the pod's service account."""

    # Bound service-account tokens expire (an hour by default) and the
    # kubelet rewrites the file well before: it is read again this often.
    TOKEN_REREAD = 60.0

    def __init__(self, base_url=None, token=None, ca_file=None, timeout=10.0, token_file=None):
        if base_url is None:
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), \
                os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise ValueError("not in a pod (no KUBERNETES_SERVICE_HOST); "
                                 "set kubernetes_api to the API server's URL")
            base_url = f"https://{host}:{port}"
            if token is None:
                token_file = token_file or os.path.join(SERVICE_ACCOUNT, "token")
            ca_file = ca_file or os.path.join(SERVICE_ACCOUNT, "ca.crt")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._token_file = token_file
        self._token_read_at = float("-inf")
        self._context = ssl.create_default_context(cafile=ca_file) \
            if self.base_url.startswith("https") else None
        self.timeout = timeout

    def _bearer(self):
        if self._token_file and time.monotonic() - self._token_read_at >= self.TOKEN_REREAD:
            self._token = _read(self._token_file) or self._token
            self._token_read_at = time.monotonic()
        return self._token

    def _open(self, path, timeout):
        request = urllib.request.Request(self.base_url + path)
        token = self._bearer()
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        return urllib.request.urlopen(request, timeout=timeout, context=self._context)

    def stream(self, path, read_timeout):
        """The lines of a streamed reply (a watch), each at most MAX_EVENT_BYTES;
        a read waits at most `read_timeout` seconds."""
        with self._open(path, read_timeout) as reply:
            while True:
                line = reply.readline(MAX_EVENT_BYTES + 1)
                if not line:
                    return
                if len(line) > MAX_EVENT_BYTES:
                    raise ValueError(f"a watch event larger than {MAX_EVENT_BYTES} bytes")
                yield line

    def get(self, path):
        with self._open(path, self.timeout) as reply:
            data = reply.read(MAX_REPLY_BYTES + 1)
        if len(data) > MAX_REPLY_BYTES:
            raise ValueError(f"reply to {path} larger than {MAX_REPLY_BYTES} bytes")
        return json.loads(data)


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


class PodMetadata:
    """This node's pods, kept fresh by a watch; lookups never block on the API."""

    def __init__(self, client, node, interval=30.0, owner_cache_size=4096):
        self._client = client
        self.node = node
        self.interval = interval  # pause after a failure
        self._containers, self._pods = {}, {}
        self._items = {}  # pod uid -> the pod object, as listed and watched
        self._deleted = {}  # pod uid -> (when it was deleted, the pod object), oldest first
        self.version = None  # the resourceVersion the pods are at
        self._owners = {}
        self._owner_cache_size = owner_cache_size
        self._lock = threading.Lock()
        self.failures = 0

    def _owner_of(self, namespace, kind, name):
        key = (namespace, kind, name)
        if key not in self._owners:
            group = "apps/v1/namespaces/{}/replicasets/{}" if kind == "ReplicaSet" \
                else "batch/v1/namespaces/{}/jobs/{}"
            try:
                found = _controller(self._client.get(
                    "/apis/" + group.format(namespace, name)).get("metadata", {}))
            except API_ERRORS as exc:
                log.debug("no owner for %s %s/%s: %s", kind, namespace, name, exc)
                return None  # not cached: asked again at the next refresh
            if len(self._owners) >= self._owner_cache_size:
                self._owners.clear()
            self._owners[key] = found
        return self._owners[key]

    def _selector(self):
        selector = urllib.parse.quote(f"spec.nodeName={self.node}") if self.node else ""
        return f"fieldSelector={selector}&" if selector else ""

    def _pod_list(self):
        """(This node's pods, the list's resourceVersion), page by page
        (PAGE_SIZE each, at most MAX_PAGES)."""
        path = f"/api/v1/pods?{self._selector()}limit={PAGE_SIZE}"
        items, cont, version = [], None, None
        for _ in range(MAX_PAGES):
            page = self._client.get(path + (f"&continue={urllib.parse.quote(cont)}"
                                            if cont else ""))
            if not isinstance(page, dict):
                raise ValueError("the pod list is not an object")
            found = page.get("items")
            if not isinstance(found, list):
                raise ValueError("the pod list's items are not a list")
            items += found
            version = version or _metadata_string(page, "resourceVersion")
            cont = _metadata_string(page, "continue")
            if not cont:
                break
        return items, version

    def refresh(self):
        """List the pods anew; True if it worked.  `version` is then the list's
        resourceVersion, where a watch can start (None if it carried none)."""
        try:
            items, self.version = self._pod_list()
        except API_ERRORS as exc:
            self.failures += 1
            log.warning("cannot list this node's pods from %s: %s", self._client.base_url, exc)
            return False
        listed = {}
        for pod in items:
            uid = _uid(pod)
            if uid is not None:
                listed[uid] = pod
        for uid in self._items.keys() - listed.keys():
            self._forget(uid)
        self._items = listed
        self._index()
        return True

    def _forget(self, uid):
        pod = self._items.pop(uid, None)
        if pod is not None:
            self._deleted.pop(uid, None)
            self._deleted[uid] = (time.monotonic(), pod)

    def _index(self):
        now = time.monotonic()
        while self._deleted:
            uid, (at, _) = next(iter(self._deleted.items()))
            if now - at <= DELETED_GRACE and len(self._deleted) <= MAX_DELETED:
                break
            del self._deleted[uid]
        # Live pods after deleted ones: a container id reused wins as live.
        pods = [pod for _, pod in self._deleted.values()] + list(self._items.values())
        containers, pods = index_pods({"items": pods}, self._owner_of)
        with self._lock:
            self._containers, self._pods = containers, pods
        log.debug("pod metadata: %d pods, %d containers", len(pods), len(containers))

    def watch(self, version, stop):
        """Apply this node's pod events from `version` on until the API ends
        the watch; returns the version to resume from, or None to list anew
        (the version expired, or the stream made no sense)."""
        path = (f"/api/v1/pods?{self._selector()}watch=1&allowWatchBookmarks=true"
                f"&timeoutSeconds={WATCH_SECONDS}&resourceVersion={urllib.parse.quote(version)}")
        try:
            for line in self._client.stream(path, WATCH_SECONDS + 30):
                if stop.is_set():
                    return version
                if not line.strip():
                    continue
                event = json.loads(line)
                if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                    raise ValueError("a watch event is not an object")
                kind, pod = event.get("type"), event["object"]
                if kind == "ERROR":  # 410 Gone: the version is too old to watch from
                    log.info("pod watch ended by the API (%s): listing again",
                             pod.get("code", "no code"))
                    return None
                version = _metadata_string(pod, "resourceVersion") or version
                uid = _uid(pod)
                if kind in ("ADDED", "MODIFIED") and uid is not None:
                    self._items[uid] = pod
                elif kind == "DELETED" and uid is not None:
                    self._forget(uid)
                else:
                    continue  # BOOKMARK, or a pod without uid
                self._index()
        except API_ERRORS as exc:
            self.failures += 1
            log.warning("pod watch on %s failed: %s", self._client.base_url, exc)
            return None
        return version

    def of_cgroup_path(self, path):
        """ContainerMeta for a cgroup path (a pod's own cgroup gives the pod
        with no container), or None (a container the watch has not told of yet)."""
        pod_uid, container_id = parse_cgroup_path(path)
        if not (pod_uid or container_id):
            return None
        with self._lock:
            meta = self._containers.get(container_id) or self._pods.get(pod_uid)
        return meta

    def run(self, stop, min_interval=5.0):
        """List, then watch and resume the watch, until `stop`; a watch that
        ends sooner than `min_interval` is resumed no sooner, and a failed
        list is tried again after `interval`."""
        version = None
        while not stop.is_set():
            started = time.monotonic()
            if version is None:
                # A failed list, or an API that gives no version (then: poll).
                if not self.refresh() or self.version is None:
                    if stop.wait(self.interval):
                        return
                    continue
                version = self.version
            version = self.watch(version, stop)
            wait = min_interval - (time.monotonic() - started)
            if wait > 0 and stop.wait(wait):
                return


def _metadata_string(obj, field):
    """obj["metadata"][field] when the API gave a string there, else None."""
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    value = metadata.get(field) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None


def _uid(pod):
    return _metadata_string(pod, "uid") or None
