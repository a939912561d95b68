"""`python -m benchmarks` (what `make bench` runs): every benchmark, one after the other."""

import sys

from benchmarks import overhead, scale, serving

for bench in (overhead, scale, serving):
    sys.argv = [bench.__name__]
    bench.main()
