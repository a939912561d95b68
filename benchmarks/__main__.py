"""`python -m benchmarks` (what `make bench` runs): every benchmark, one after the other."""

from benchmarks import serving

serving.main()
