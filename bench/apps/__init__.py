"""The two no-op apps the benchmark runs, and the probes both share."""
