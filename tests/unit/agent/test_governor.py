"""The overhead governor's control: sample more above the budget, less below."""

from taskscope.agent.governor import Governor, bpf_run_seconds


class Clock:
    def __init__(self):
        self.t, self.cpu = 0.0, 0.0


def governor(clock, percent=1.0):
    written = []
    g = Governor(written.append, max_cpu_percent=percent, interval=1.0, window=3.0,
                 cpu_seconds=lambda: clock.cpu, clock=lambda: clock.t)
    g._samples.append((clock.t, clock.cpu))
    return g, written


def tick(g, clock, cores):
    clock.t += 1.0
    clock.cpu += cores
    return g.step()


def test_above_the_budget_it_samples_in_proportion_and_eases_off_below_it():
    clock = Clock()
    g, written = governor(clock, percent=1.0)
    assert tick(g, clock, 0.005) == 1 and written == []  # under budget: all traced
    assert tick(g, clock, 0.04) > 1  # 4x the budget (averaged): sample
    first = g.sample_every
    assert written == [first]
    # Cost proportional to what is traced: settles where it fits the budget.
    for _ in range(30):
        tick(g, clock, 0.002 + 0.06 / g.sample_every)
    assert 0.008 <= g.cpu_fraction <= 0.013, (g.cpu_fraction, g.sample_every)
    # Load gone: back to tracing everything.
    for _ in range(30):
        tick(g, clock, 0.001)
    assert g.sample_every == 1 and written[-1] == 1


def test_no_budget_never_samples():
    clock = Clock()
    g, written = governor(clock, percent=0.0)
    for _ in range(5):
        tick(g, clock, 0.5)
    assert g.sample_every == 1 and written == []


def test_bpf_run_time_is_read_from_fdinfo(tmp_path):
    (tmp_path / "3").write_text("pos:\t0\nprog_type:\t5\nrun_time_ns:\t1500000000\nrun_cnt:\t9\n")
    (tmp_path / "4").write_text("pos:\t0\nmap_type:\t1\n")
    (tmp_path / "5").write_text("run_time_ns:\t500000000\n")
    assert bpf_run_seconds(str(tmp_path)) == 2.0
    (tmp_path / "empty").mkdir()
    assert bpf_run_seconds(str(tmp_path / "empty")) is None
