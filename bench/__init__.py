"""LocoLab's benchmarks (``make bench``): generation throughput, the edit solve, and the dashboard's queries. Each
reports ratios or medians measured in one run; speed goals live here, not in the tests."""
