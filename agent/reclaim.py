"""Reclaim of the kernel maps keyed by owner, so churn never fills one for good.

Why: the kernel adds an entry per owner (cgroup, identity) to the per-service
maps (TCP counters and byte slots, run-queue, block-IO, connect and RTT
histograms) and never removes one.  Every short-lived container or job adds
owners; once a map is full, new workloads lose their metrics until restart.

What: every `interval`, entries of owners that are gone move onto a retired
owner of the same service (cgroup 0, never written by the kernel), so the
service's counters and histograms stay monotonic while the dead owners'
entries are freed:
- an owner whose cgroup no longer exists is gone (always);
- when a map is above HIGH_WATER full, so is an owner whose cgroup lives but
  whose identity no live process holds (a job that ran and ended);
- when a map is still above HIGH_WATER after that, its retired entries are
  dropped (those services' series restart from zero), and
- ident_names above HIGH_WATER loses the names no map refers to.
Counter slots freed are reused: the processes and sockets that cached them
(or cached "none free") claim again on their next event.

Owners are read before the cgroup walk, never after: an owner seen in a map
whose cgroup is missing from a later walk is gone for good (cgroup ids are
not reused), where a walk first could miss a cgroup created in between.
"""

import logging

from taskscope.agent.host import procfs
from taskscope.agent.kernel.maps import RETIRED_CGROUP

log = logging.getLogger(__name__)

__all__ = ["OwnerReclaim"]

HIGH_WATER = 0.75
ALWAYS_LIVE = {1}  # the root cgroup


class OwnerReclaim:
    def __init__(self, maps, resolver, cgroups, interval=30.0, proc="/proc"):
        self._maps = maps
        self._resolver = resolver
        self._cgroups = cgroups  # host.cgroups.CgroupPaths
        self.interval = interval
        self._proc = proc
        self._warned_namespace = False

    def run(self, stop):
        """Reclaim every `interval` until `stop` is set (a Workers job)."""
        while not stop.wait(self.interval):
            self.reclaim_once()

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
                log.warning("cgroup root %s is not the hierarchy's root: entries of removed "
                            "cgroups are reclaimed only when a map fills", self._cgroups.root)
                self._warned_namespace = True
        else:
            live_cgroups |= ALWAYS_LIVE
            gone.update((o, "cgroup_gone") for o in seen if o[0] not in live_cgroups)
        pressed = [name for name in owners if self._maps.fill(name) >= HIGH_WATER]
        tgids = None
        if pressed:
            tgids = procfs.pids(self._proc)
            live_idents = self._maps.identities_of(tgids)
            for name in pressed:
                gone.update((o, "identity_gone") for o in owners[name]
                            if o not in gone and o[0] != RETIRED_CGROUP
                            and o[1] not in live_idents)
        result = {}
        freed = set()
        for reason in ("cgroup_gone", "identity_gone"):
            moves = {o: self._retired_identity(o) for o, r in gone.items() if r == reason}
            freed |= self._maps.retire(moves, reason)
            if moves:
                result[reason] = len(moves)
        if freed:
            self._maps.release_slots(tgids if tgids is not None else procfs.pids(self._proc),
                                     freed)
        after = self._maps.owners()
        for name in after:
            if self._maps.fill(name) >= HIGH_WATER:
                dropped = self._maps.drop_retired(name)
                if dropped:
                    log.warning("%s stays %.0f%% full after reclaim: dropped %d retired "
                                "entries (those services' series restart from zero)",
                                name, 100 * self._maps.fill(name), dropped)
        if self._maps.has("ident_names"):
            self._maps.rows("ident_names")  # its fill, as of now
            if self._maps.fill("ident_names") >= HIGH_WATER:
                keep = self._maps.referenced_identities()
                keep |= self._maps.identities_of(procfs.pids(self._proc))
                self._maps.forget_identities(keep)
        if result:
            log.info("reclaimed the entries of %s", ", ".join(
                f"{n} owners ({reason.replace('_', ' ')})" for reason, n in result.items()))
        return result

    def _retired_identity(self, owner):
        """The retired identity of an owner's service, or None when
        ident_names is full: its counts are then dropped."""
        return self._maps.retired_identity(self._resolver.resolve(*owner))
