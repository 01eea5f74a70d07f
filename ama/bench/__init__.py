"""``ama bench``: a load generator for AMA Mesh and for peer servers run beside it.

Layout:

* ``stats``, ``report``: pure code (percentiles, latency histograms, slope
  fits, ratio tables, JSON shape, table text).
* ``wsclient``, ``dialects``, ``worker``: lean WebSocket clients, run in
  several worker processes.
* ``systems``: the servers under test (an ``ama up`` cluster, and the peers
  in ``benchmarks/``), started, pinned and stopped by process id.
* ``scenarios``, ``core_scenarios``: the scenarios; ``command``: the CLI.
"""
