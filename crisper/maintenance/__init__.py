"""Small periodic units the scheduler runs: relay, timers, lifeline, canceller, pruner."""
