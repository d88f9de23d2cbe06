"""taskscope agent: loads the eBPF probes and serves what they measure."""

__version__ = "0.1.0"
