"""The demo hub (``make demo``): its configuration, a hub subprocess runner, a client and
the streaming proxy. Used by the demo, the hub tests and the benchmarks."""
