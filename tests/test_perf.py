import subprocess
import sys
import textwrap

import pytest

from qnn.perf import retain_freed_memory

_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    torch.set_num_threads(1)
    from qnn.kan import KANLinear
    if sys.argv[1] == "retain":
        from qnn.perf import retain_freed_memory
        assert retain_freed_memory()
    torch.manual_seed(0)
    a, b = KANLinear(1232, 176, grid_size=3), KANLinear(320, 256, grid_size=3)
    x, z = torch.rand(32, 1232, requires_grad=True), torch.rand(32, 320, requires_grad=True)
    def step():
        (a(x).sum() + b(z).sum()).backward()
        for p in (*a.parameters(), *b.parameters(), x, z):
            p.grad = None
    for _ in range(3):
        step()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 10)
    """
)


def _faults(mode):
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc-specific")
def test_retain_freed_memory_removes_page_faults():
    default, retained = _faults("default"), _faults("retain")
    # the KAN steps allocate ~20 MB of weight-sized temporaries per step
    assert retained < 0.2 * default, (default, retained)


def test_retain_freed_memory_validates():
    with pytest.raises(ValueError, match=r"retain_freed_memory: mmap_threshold must be an int in \(0, 2\*\*31\); got -1"):
        retain_freed_memory(mmap_threshold=-1)
    with pytest.raises(ValueError, match="trim_threshold must be an int"):
        retain_freed_memory(trim_threshold=2.5)
