"""Running the gateway: the ``aigateway`` command (one module per subcommand in
``aigateway.extproc.ops.cli``), ``up``, ``serve --workers``, the Envoy bootstrap, and the
mock backend that tests, ``up`` and the benchmarks use."""
