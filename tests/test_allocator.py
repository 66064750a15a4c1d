"""metaviz.allocator: freed activation-sized blocks are reused instead of faulted in again."""
import subprocess
import sys

import pytest

# Three blocks alive at once, written and freed, round after round (the activations of a forward
# pass over a few hundred images: 30 MiB; meta-batch 32's query images: 40-90 MiB), straight through the C library's malloc and free
# (torch's own allocations would add their noise): prints the page faults of 10 rounds after
# the first.
ROUNDS = """
import ctypes, resource, sys
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, (ctypes.c_size_t,), (ctypes.c_void_p,)
if sys.argv[1] == "tuned":
    from metaviz.allocator import keep_freed_memory
    assert keep_freed_memory()
SIZE = int(sys.argv[2]) * 2**20
def one_round():
    blocks = [libc.malloc(SIZE) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, SIZE)
    for block in blocks:
        libc.free(block)
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(setting: str, mib: int) -> int:
    result = subprocess.run([sys.executable, "-c", ROUNDS, setting, str(mib)], capture_output=True, text=True,
                            check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.parametrize("mib", [30, 60])
def test_glibc_defaults_fault_the_blocks_in_every_round(mib):
    """What keep_freed_memory is for: without it the kernel maps and zeroes them again each time."""
    pages_per_round = 3 * mib * 2**20 // 4096
    assert page_faults("default", mib) > 8 * pages_per_round  # measured: 10 rounds' worth


@pytest.mark.parametrize("mib", [30, 60])
def test_kept_blocks_are_reused(mib):
    pages_per_round = 3 * mib * 2**20 // 4096
    assert page_faults("tuned", mib) < pages_per_round // 10  # measured: 0
