"""``python -m jupyter_spark_openstack.kernel -f {connection_file}``."""

if __name__ == "__main__":
    from .kernelapp import main

    main()
