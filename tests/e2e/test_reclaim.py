"""Churn never fills an owner-keyed map for good (bpf/counter_slots.h, agent/reclaim.py).

30,000 short-lived processes in 10,000 cgroups, each connecting and sending a
byte: more owners than tcp_stats holds (TCP_STATS_ENTRIES), so without
reclaim the map would be full and the service started afterwards would
have no TCP series.  With it, the dead owners' entries are folded into
their service and freed, nothing is dropped, the churned service's totals
survive, and the new service is measured.
"""

import os
import socket
import subprocess
import threading
import time
import uuid

from taskscope.agent.host.cgroups import find_cgroup2_mount
from taskscope.agent.kernel_abi import MAP_SIZES

from .agent_process import Agent
from .workloads import run_named

CGROUPS = 10_000
PROCESSES_PER_CGROUP = 3
LOOPS = 2  # churn loops side by side (one per core)


def value(samples, name, **labels):
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def accept_forever(server):
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        conn.close()


# A cgroup is removed one round after its processes ended: until an exited
# task is released, rmdir answers EBUSY.
CHURN = r"""
parent=$1; first=$2; last=$3; port=$4
remove() { for _ in {1..500}; do rmdir "$1" 2>/dev/null && return; sleep 0.01; done; exit 1; }
for ((i = first; i < last; i++)); do
  mkdir "$parent/c$i"
  for j in 1 2 3; do
    (echo $BASHPID > "$parent/c$i/cgroup.procs" &&
     exec bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; echo x >&3")
  done
  if ((i > first)); then remove "$parent/c$((i - 1))"; fi
done
remove "$parent/c$((last - 1))"
"""


def test_churn_of_cgroups_and_processes_leaves_room_for_a_new_service(tmp_path):
    assert CGROUPS > MAP_SIZES["TCP_STATS_ENTRIES"]  # without reclaim, tcp_stats would fill
    agent = Agent("--probes", "tcp", "--reclaim-interval", "2s",
                  log_path=tmp_path / "agent.log")
    server = socket.create_server(("127.0.0.1", 0), backlog=4096)
    threading.Thread(target=accept_forever, args=(server,), daemon=True).start()
    port = server.getsockname()[1]
    parent = f"{find_cgroup2_mount()}/taskscope-churn-{uuid.uuid4().hex[:8]}"
    os.mkdir(parent)
    try:
        started = time.monotonic()
        per_loop = CGROUPS // LOOPS
        loops = [subprocess.Popen(["bash", "-c", CHURN, "churn", parent, str(k * per_loop),
                                   str((k + 1) * per_loop), str(port)])
                 for k in range(LOOPS)]
        for loop in loops:
            assert loop.wait(timeout=600) == 0
        churn_seconds = time.monotonic() - started

        # Two reclaim passes after the churn: nothing of it may stay.
        time.sleep(5)
        run_named("after-churn", f"""
import socket
c = socket.create_connection(("127.0.0.1", {port}))
c.sendall(b"y" * 1000)
c.close()
""")
        deadline = time.monotonic() + 30
        while True:
            samples = agent.scrape()
            opened = value(samples, "taskscope_tcp_connections_opened_total",
                           service="after-churn", direction="active")
            sent = value(samples, "taskscope_tcp_sent_bytes_total", service="after-churn")
            if (opened and sent) or time.monotonic() > deadline:
                break
            time.sleep(1)
        context = f"churn took {churn_seconds:.0f} s\n{agent.log()[-3000:]}"
        assert opened == 1, context
        assert sent >= 1000, context
        # The churned owners' entries were freed, not dropped.
        entries = value(samples, "taskscope_map_entries", map="tcp_stats")
        assert entries < 0.75 * MAP_SIZES["TCP_STATS_ENTRIES"], context
        assert value(samples, "taskscope_map_drops_total", reason="tcp_stats") == 0, context
        assert value(samples, "taskscope_map_drops_total", reason="counter_slots") == 0, context
        reclaimed = value(samples, "taskscope_map_reclaimed_entries_total", map="tcp_stats",
                          reason="cgroup_gone")
        assert reclaimed >= CGROUPS, context
        slots = value(samples, "taskscope_map_reclaimed_entries_total",
                      map="counter_slot_owners", reason="cgroup_gone")
        assert slots >= CGROUPS, context
        # ... and their counts were kept: every churned connection is still
        # counted under its service (bash), bytes included.
        churned = CGROUPS * PROCESSES_PER_CGROUP
        assert value(samples, "taskscope_tcp_connections_opened_total", service="bash",
                     direction="active") >= churned, context
        assert value(samples, "taskscope_tcp_sent_bytes_total", service="bash") >= 2 * churned
        assert "Traceback" not in agent.log()
    finally:
        server.close()
        code, _ = agent.stop()
        for i in range(CGROUPS):
            try:
                os.rmdir(f"{parent}/c{i}")
            except FileNotFoundError:
                pass
        os.rmdir(parent)
    assert code == 0
