"""The label budget: how many services a metric may have before the rest fold
into service="other", so a node with thousands of short-lived names cannot
blow up Prometheus."""

__all__ = ["OTHER", "LabelBudget"]

OTHER = "other"


class LabelBudget:
    """At most `limit` services per metric; later ones fold into `other`.

    Admission is sticky, so a service never flips between its own series and
    `other` from one scrape to the next (that would look like a counter reset).
    """

    def __init__(self, limit):
        self.limit = limit
        self._admitted = set()
        self._folded = set()

    def label(self, service):
        if service in self._admitted:
            return service
        if len(self._admitted) < self.limit:
            self._admitted.add(service)
            return service
        if len(self._folded) < 100_000:
            self._folded.add(service)
        return OTHER

    @property
    def folded(self):
        return len(self._folded)
