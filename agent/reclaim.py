"""Reclaim of the kernel maps keyed by owner, so churn never fills one for good.

Why: the kernel adds an entry per owner (cgroup, identity) to the per-service
maps (TCP counters and byte slots, run-queue, block-IO, connect and RTT
histograms) and never removes one.  Every short-lived container or job adds
owners; once a map is full, new workloads lose their metrics until restart.

What: every `interval`, entries of owners that are gone move onto a retired
owner of the same service (cgroup 0, never written by the kernel), so the
service's counters and histograms stay monotonic while the dead owners'
entries are freed:
- an owner whose cgroup no longer exists is gone;
- so is an owner whose cgroup lives on but whose identity no live process
  holds (a job that ran and ended; the next run adds to the same service);
- a retired entry nothing was folded into for `retired_expiry` seconds (the
  graph's expiry, an hour by default) is dropped: its service is gone, and
  so are its series;
- when a map is still above HIGH_WATER after that, its retired entries are
  dropped (those services' series restart from zero), and
- ident_names above HIGH_WATER loses the names no map refers to, then (if
  still above) every retired entry and its name.
Counter slots freed are reused: the processes and sockets that cached them
(or cached "none free") claim again on their next event.

Owners are read before the cgroup walk, never after: an owner seen in a map
whose cgroup is missing from a later walk is gone for good (cgroup ids are
not reused), where a walk first could miss a cgroup created in between.
"""

import ctypes
import logging
import time

from taskscope.agent.host import procfs
from taskscope.agent.kernel.maps import RETIRED_CGROUP

log = logging.getLogger(__name__)

__all__ = ["OwnerReclaim", "release_heap"]

HIGH_WATER = 0.75
ALWAYS_LIVE = {1}  # the root cgroup


def release_heap():
    """Hand freed heap back to the OS (glibc keeps it otherwise): after a
    pass has dropped caches and entries, and after large scrapes, the
    agent's RSS then follows what it holds, not the most it ever held."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class OwnerReclaim:
    def __init__(self, maps, resolver, cgroups, interval=30.0, proc="/proc",
                 retired_expiry=3600.0, clock=time.monotonic):
        self._maps = maps
        self._resolver = resolver
        self._cgroups = cgroups  # host.cgroups.CgroupPaths
        self.interval = interval
        self._proc = proc
        self._retired_expiry = retired_expiry
        self._clock = clock
        self._retired_at = {}  # retired identity -> when something was last folded into it
        self._warned_namespace = False

    def run(self, stop):
        """Reclaim every `interval` until `stop` is set (a Workers job)."""
        while not stop.wait(self.interval):
            self.reclaim_once()
            release_heap()

    def reclaim_once(self):
        """One pass; returns {reason: owners retired}."""
        owners = self._maps.owners()  # before the walk (see the module's docstring)
        seen = set()
        for counts in owners.values():
            seen.update(o for o in counts if o[0] != RETIRED_CGROUP)
        live_cgroups = self._cgroups.live_ids()
        gone = {}
        if live_cgroups is None:
            if not self._warned_namespace:
                log.warning("cgroup root %s is not the hierarchy's root: owners are reclaimed "
                            "only once no process holds their identity", self._cgroups.root)
                self._warned_namespace = True
        else:
            live_cgroups |= ALWAYS_LIVE
            gone.update((o, "cgroup_gone") for o in seen if o[0] not in live_cgroups)
        tgids = procfs.pids(self._proc)
        live_idents = self._maps.identities_of(tgids)
        gone.update((o, "identity_gone") for o in seen
                    if o not in gone and o[1] not in live_idents)
        result = {}
        freed = set()
        now = self._clock()
        for reason in ("cgroup_gone", "identity_gone"):
            moves = {o: self._retired_identity(o) for o, r in gone.items() if r == reason}
            freed |= self._maps.retire(moves, reason)
            self._retired_at.update((ident, now) for ident in moves.values() if ident)
            if moves:
                result[reason] = len(moves)
        expired = {i for i, at in self._retired_at.items() if now - at > self._retired_expiry}
        if expired:
            for name in owners:
                self._maps.drop_retired(name, expired, "retired_expired")
            for ident in expired:
                del self._retired_at[ident]
            result["retired_expired"] = len(expired)
        # A map under HIGH_WATER before the moves is under it after them: only
        # those above it are read again, for their fill as of now.
        for name in owners:
            if self._maps.fill(name) >= HIGH_WATER and self._fill_now(name) >= HIGH_WATER:
                self._drop_all_retired([name], f"{name} stays {100 * self._maps.fill(name):.0f}%"
                                       " full after reclaim")
        if self._maps.has("ident_names") and self._fill_now("ident_names") >= HIGH_WATER:
            self._forget_names(live_idents)
            if self._fill_now("ident_names") >= HIGH_WATER:
                self._drop_all_retired(list(owners), "ident_names stays full")
                self._forget_names(live_idents)
        if freed:
            self._maps.release_slots(tgids, freed)
        if result:
            log.info("reclaim: %s", ", ".join(
                f"{n} {reason.replace('_', ' ')}" for reason, n in result.items()))
        return result

    def _fill_now(self, name):
        self._maps.rows(name)  # the fill as of now
        return self._maps.fill(name)

    def _forget_names(self, live_idents):
        self._maps.forget_identities(self._maps.referenced_identities() | live_idents)

    def _drop_all_retired(self, names, why):
        dropped = sum(self._maps.drop_retired(name) for name in names)
        if len(names) > 1:
            self._retired_at.clear()  # no retired entry is left anywhere
        if dropped:
            log.warning("%s: dropped %d retired entries (those services' series restart "
                        "from zero)", why, dropped)

    def _retired_identity(self, owner):
        """The retired identity of an owner's service, or None when
        ident_names is full: its counts are then dropped."""
        labels = tuple(sorted(self._resolver.pod_labels(owner[0]).items()))
        return self._maps.retired_identity(self._resolver.resolve(*owner), labels)
