"""End-to-end benchmarks: ``make bench`` prints one JSON object of measured figures."""
