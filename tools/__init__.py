"""Development tools, not part of the installed product: the local broker, the sandbox platform,
the demo, the benchmark, the workload generator and the worker-process helper (run by make)."""
