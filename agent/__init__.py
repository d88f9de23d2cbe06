"""The node side: loads the eBPF probes, reads their maps, names their owners.

`kernel` talks to the BPF programs (catalogue, BTF, loading, maps, ring
buffer, cgroup_skb and uprobe attachment); `host` reads the machine (/proc,
cgroups, devices, conntrack, Kubernetes, service naming); the modules here
put the two together into records.  Nothing here imports from topology or
exporters.
"""
