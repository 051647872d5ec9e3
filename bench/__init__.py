"""The benchmark harness of issue 6: ``python -m bench`` (or ``make bench``).

It measures the addon against direct upstream access, plain mitmdump and the Portkey gateway under the
same interleaved load, times the pure transforms against an orjson floor, and writes
``bench/results.md``. ``--smoke`` runs a tiny version with Python stand-ins, for the test suite.
"""
