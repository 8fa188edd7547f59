"""Throughput and memory benchmarks (`make bench`); each prints its figure next to a peer measured in the same run."""
