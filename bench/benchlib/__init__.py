"""Shared pieces of the Nimbus benchmark programs in `bench/`.

Each module owns one concern: child processes and their cleanup (`procs`), waiting for idle CPUs
(`cpu`), driving `wrk` (`wrk`), the nginx peer (`nginx`), the Nimbus side (`nimbus`) and the
medians, ratios and table (`report`). Standard library only; nothing here installs anything.
"""
