"""Runnable architectures from the seed talks, each tested (see docs/examples.md)."""
