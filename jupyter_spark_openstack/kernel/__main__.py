"""``python -m jupyter_spark_openstack.kernel -f {connection_file}``."""

if __name__ == "__main__":
    # Start the SparkSession before the (slow) ipykernel import: it runs in a background thread.
    from .boot import boot

    boot()

    from .kernelapp import main

    main()
