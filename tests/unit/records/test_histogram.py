from taskscope.records.histogram import BOUNDS_SECONDS, Log2Histogram


def test_buckets_are_cumulative_in_seconds_with_fixed_bounds():
    h = Log2Histogram()
    h.add(12, 3, 3 * 5000)       # 4.1-8.2 us
    h.add(20, 1, 1_500_000)      # 1.05-2.1 ms
    buckets = h.buckets()
    assert [le for le, _ in buckets[:-1]] == [repr(b) for b in BOUNDS_SECONDS]
    assert buckets[-1] == ("+Inf", 4)
    as_dict = dict(buckets)
    assert as_dict[repr(2.0 ** 12 / 1e9)] == 0   # slot 12 lies above 4.096 us
    assert as_dict[repr(2.0 ** 13 / 1e9)] == 3
    assert as_dict[repr(2.0 ** 20 / 1e9)] == 3
    assert as_dict[repr(2.0 ** 21 / 1e9)] == 4
    counts = [c for _, c in buckets]
    assert counts == sorted(counts)


def test_slots_outside_the_range_fold_into_first_bucket_and_inf():
    h = Log2Histogram()
    h.add(0, 2, 0)
    h.add(3, 1, 9)
    h.add(40, 5, 5 << 40)
    buckets = h.buckets()
    assert buckets[0] == (repr(BOUNDS_SECONDS[0]), 3)
    assert buckets[-2][1] == 3
    assert buckets[-1] == ("+Inf", 8)


def test_merging_entries_adds_counts_and_sums():
    h = Log2Histogram()
    h.add(15, 2, 100)
    h.add(15, 3, 200)
    other = Log2Histogram()
    other.add(16, 1, 70000)
    h.merge(other)
    assert h.slots == {15: 5, 16: 1} and h.sum_ns == 70300 and h.count == 6


def test_quantile_is_the_mean_of_the_slot_holding_it():
    h = Log2Histogram()
    h.add(10, 50, 50 * 1500)            # 50 samples of 1.5 us
    h.add(25, 50, 50 * 40_000_000)      # 50 samples of 40 ms
    assert h.quantile(0.5) == 1.5e-6
    assert h.quantile(0.51) == 0.04
    assert Log2Histogram().quantile(0.5) is None


def test_log2_slot_is_the_kernels():
    from taskscope.records.histogram import MAX_SLOT, log2_slot
    assert [log2_slot(v) for v in (0, 1, 2, 3, 4, 1023, 1024)] == [0, 0, 1, 1, 2, 9, 10]
    assert log2_slot(2 ** 60) == MAX_SLOT
