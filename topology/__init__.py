"""Service topology (cross-service dependency graph): not built yet.

Planned in the topology issue; nothing here pretends to work until then.
"""
