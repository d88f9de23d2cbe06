"""What the host says about processes, sockets and containers: /proc, cgroups,
block devices, conntrack, Kubernetes, and the service names built from them."""
