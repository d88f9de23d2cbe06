"""Log2 histograms from the kernel, as Prometheus wants them.

Slot s of a kernel histogram counts values v (in ns) with 2**s <= v < 2**(s+1)
(slot 0 also holds 0).  Exported buckets are cumulative, in seconds, with
fixed bounds so every series of a family has the same `le` set.
"""

from dataclasses import dataclass, field

# Log2 slots of nanoseconds, as the kernel fills them; slot 40 starts at
# 2**40 ns (about 18 minutes) and holds everything above.
MAX_SLOT = 40

# Bucket bounds 2**10 ns (1.02 us) .. 2**34 ns (17.2 s); slots below fold
# into the first bucket, slots above into +Inf.
FIRST_BOUND_EXP = 10
LAST_BOUND_EXP = 34
BOUNDS_SECONDS = tuple(2.0 ** e / 1e9 for e in range(FIRST_BOUND_EXP, LAST_BOUND_EXP + 1))


def log2_slot(ns):
    """The slot a value of `ns` nanoseconds falls in, as log2_slot() in
    bpf/hist.h computes it (user space adds the samples the kernel still
    holds with it)."""
    return min(ns.bit_length() - 1, MAX_SLOT) if ns > 0 else 0


@dataclass
class Log2Histogram:
    """Per-slot counts and sums, merged from any number of map entries."""

    slots: dict = field(default_factory=dict)
    slot_sums: dict = field(default_factory=dict)

    def add(self, slot, count, sum_ns):
        self.slots[slot] = self.slots.get(slot, 0) + count
        self.slot_sums[slot] = self.slot_sums.get(slot, 0) + sum_ns

    def merge(self, other):
        for slot, count in other.slots.items():
            self.add(slot, count, other.slot_sums.get(slot, 0))

    def minus(self, earlier):
        """What was added since `earlier`, a previous reading of the same series."""
        out = Log2Histogram()
        for slot, count in self.slots.items():
            n = count - earlier.slots.get(slot, 0)
            if n > 0:
                out.add(slot, n, self.slot_sums.get(slot, 0) - earlier.slot_sums.get(slot, 0))
        return out

    @property
    def sum_ns(self):
        return sum(self.slot_sums.values())

    @property
    def count(self):
        return sum(self.slots.values())

    def buckets(self):
        """[(le, cumulative count)] including +Inf, as prometheus_client takes them."""
        out = []
        running = 0
        # Slot s lies entirely below 2**(s+1): it belongs to bound exponent s+1.
        by_bound = {}
        for slot, n in self.slots.items():
            bound = max(slot + 1, FIRST_BOUND_EXP)
            by_bound[bound] = by_bound.get(bound, 0) + n
        for exp, bound in zip(range(FIRST_BOUND_EXP, LAST_BOUND_EXP + 1), BOUNDS_SECONDS):
            running += by_bound.get(exp, 0)
            out.append((_format_bound(bound), running))
        out.append(("+Inf", self.count))
        return out

    def quantile(self, q):
        """Quantile q in seconds, or None when empty.

        The slot holding it is known exactly; within the slot the estimate is
        the mean of that slot's samples (the kernel keeps each slot's sum),
        which is exact for a tight distribution and never leaves the slot.
        """
        total = self.count
        if not total:
            return None
        target = q * total
        running = 0
        for slot in sorted(self.slots):
            running += self.slots[slot]
            if running >= target and self.slots[slot]:
                return self.slot_sums.get(slot, 0) / self.slots[slot] / 1e9
        return None


def _format_bound(seconds):
    return repr(seconds)
