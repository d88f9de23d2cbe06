"""The label budget of the Prometheus exporter."""

from taskscope.exporters.labels import LabelBudget


def test_label_budget_is_sticky_and_counts_folded_services():
    budget = LabelBudget(2)
    assert [budget.label(s) for s in ("a", "b", "c", "a", "d", "c")] == \
        ["a", "b", "other", "a", "other", "other"]
    assert budget.folded == 2
