"""Everything that knows Spark: ports, SPARK_HOME/Java discovery, daemons, the master's JSON."""
