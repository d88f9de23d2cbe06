"""Every part of bpf/ states what it uses: each .bpf.c file, compiled alone
with only the headers it includes (and every probe's define, BTF variants
where this kernel has them), builds.  A part that relied on a symbol some
other part happened to define first would fail here."""

import pathlib

import pytest

from taskscope.agent import kernel_abi
from taskscope.agent.kernel import btf, loader, probes, tracefs

PARTS = sorted(str(p.relative_to(loader.BPF_DIR)) for p in pathlib.Path(str(loader.BPF_DIR)).rglob(
    "*.bpf.c") if p.name != loader.ENTRY)


def test_the_entry_includes_every_part():
    entry = (loader.BPF_DIR / loader.ENTRY).read_text()
    assert all(f'#include "{part}"' in entry for part in PARTS), PARTS


@pytest.fixture(scope="module")
def every_define():
    selection = probes.select(probes.GROUPS, tracefs.find_tracefs(None), btf.load_vmlinux())
    assert not selection.missing, selection.missing
    return selection.defines()


@pytest.mark.parametrize("part", PARTS)
def test_each_part_compiles_with_only_what_it_includes(part, every_define):
    bpf = loader.import_bcc().BPF(text=loader.module_text(part),
                                  cflags=kernel_abi.cflags(every_define))
    bpf.cleanup()
