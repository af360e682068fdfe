"""Reliability tests: restart recovery, concurrency (slots, queue, two replicas), fault injection in the lab."""
