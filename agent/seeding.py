"""Tells the kernel side about what predates the agent: running processes,
listeners and open connections, found on the host, written into the maps."""

from taskscope.agent.host import identity, sockets
from taskscope.agent.host.cgroups import cgroup_id


def seed_running_state(maps, cgroup_root, listeners_by_netns, connections_by_netns):
    """Name running processes; record the owners of open listeners and
    connections, keyed by network namespace where the kernel side can read
    it (listeners at listen() with BTF; connections at a send or receive
    with BTF, never from a packet)."""
    maps.seed_identities(identity.running_processes())

    def owner(pid):
        who = identity.identify(pid)
        return (cgroup_id(pid, cgroup_root), *who) if who else None

    if maps.has("tcp_listeners"):
        owners = {where: owner(pid) for where, pid in sockets.listening_ports().items()}
        maps.seed_listeners({where: o for where, o in owners.items() if o},
                            by_netns=listeners_by_netns)
    if maps.has("tcp_preexisting"):
        rows = [(*conn, owner(pid)) for *conn, pid in sockets.established()]
        maps.seed_connections([row for row in rows if row[-1]], by_netns=connections_by_netns)
