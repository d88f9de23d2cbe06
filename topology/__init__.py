"""Service topology: who calls whom, how often and how slowly.

Pure functions from the agent's edge records to a networkx graph and its
renderings; no BPF here, so the collector can reuse it.
"""
