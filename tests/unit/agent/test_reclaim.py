"""Which owners OwnerReclaim retires, and why (the kernel side is in
tests/e2e/test_reclaim.py)."""

import collections

from taskscope.agent.reclaim import OwnerReclaim


class FakeMaps:
    def __init__(self, owners, fill=0.0, live_idents=()):
        self._owners = owners
        self._fill = fill
        self._live_idents = set(live_idents)
        self.moves = []
        self.dropped = []
        self.released = None

    def owners(self):
        return {m: collections.Counter(o) for m, o in self._owners.items()}

    def fill(self, name):
        return self._fill

    def rows(self, name):  # what a read does for fill(): nothing to update here
        return []

    def identities_of(self, tgids):
        return self._live_idents

    def retired_identity(self, service, labels=()):
        return hash(service) & 0xFFFF

    def retire(self, moves, reason):
        self.moves.append((reason, dict(moves)))
        return {7} if moves else set()

    def release_slots(self, tgids, freed):
        self.released = freed

    def drop_retired(self, name, idents=None, reason="retired_dropped"):
        self.dropped.append((name, idents, reason))
        return 0

    def has(self, name):
        return False


class FakeCgroups:
    root = "/sys/fs/cgroup"

    def __init__(self, live):
        self._live = live

    def live_ids(self):
        return None if self._live is None else set(self._live)


class FakeResolver:
    def resolve(self, cgroup, ident):
        return f"svc{ident}"

    def pod_labels(self, cgroup):
        return {}


def reclaim(maps, live_cgroups, tmp_path, **kw):
    (tmp_path / "1").mkdir(exist_ok=True)  # a /proc with one pid
    return OwnerReclaim(maps, FakeResolver(), FakeCgroups(live_cgroups), proc=str(tmp_path), **kw)


def test_owners_of_removed_cgroups_are_retired_onto_their_service(tmp_path):
    maps = FakeMaps({"tcp_stats": [(1, 10), (55, 11), (56, 12), (0, 99)]}, live_idents={10, 11, 12})
    result = reclaim(maps, {55}, tmp_path).reclaim_once()
    assert result == {"cgroup_gone": 1}
    reason, moves = maps.moves[0]
    # The root cgroup is always live; retired owners (cgroup 0) never move.
    assert reason == "cgroup_gone" and set(moves) == {(56, 12)}
    assert moves[(56, 12)] == hash("svc12") & 0xFFFF
    assert maps.released == {7}
    assert maps.dropped == []


def test_owners_no_live_process_holds_are_retired_in_live_cgroups_too(tmp_path):
    maps = FakeMaps({"runqueue_latency": [(55, 11), (55, 12)]}, fill=0.5, live_idents={12})
    assert reclaim(maps, {55}, tmp_path).reclaim_once() == {"identity_gone": 1}
    assert set(maps.moves[1][1]) == {(55, 11)}
    assert maps.dropped == []


def test_a_map_still_above_high_water_drops_its_retired_entries(tmp_path):
    maps = FakeMaps({"runqueue_latency": [(55, 12)]}, fill=0.8, live_idents={12})
    assert reclaim(maps, {55}, tmp_path).reclaim_once() == {}
    assert maps.dropped == [("runqueue_latency", None, "retired_dropped")]


def test_a_namespaced_cgroup_view_proves_no_cgroup_gone(tmp_path):
    maps = FakeMaps({"tcp_stats": [(56, 12)]}, live_idents={12})
    assert reclaim(maps, None, tmp_path).reclaim_once() == {}


def test_retired_entries_nothing_was_folded_into_for_the_expiry_are_dropped(tmp_path):
    now = [1000.0]
    maps = FakeMaps({"tcp_stats": [(56, 12)]})
    r = reclaim(maps, {55}, tmp_path, retired_expiry=3600.0, clock=lambda: now[0])
    r.reclaim_once()
    retired = hash("svc12") & 0xFFFF
    maps._owners = {"tcp_stats": [(0, retired)]}
    now[0] += 3000
    assert "retired_expired" not in r.reclaim_once()
    now[0] += 700
    assert r.reclaim_once() == {"retired_expired": 1}
    assert maps.dropped == [("tcp_stats", {retired}, "retired_expired")]
