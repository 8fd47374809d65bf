"""A PySpark kernel made the seed recipe's way: the SparkSession is created *before* the kernel
serves, so any Spark start failure kills the kernel process ("Dead kernel").

The diagnostics tests start it through the notebook server (kernelspec argv:
``[python, this file, "-f", "{connection_file}"]``) with broken settings to make real dead
kernels. Environment: ``TEST_SPARK_MASTER`` (master URL), ``TEST_SPARK_CONF`` (JSON object of
Spark properties), ``TEST_SPARK_JOB=1`` (run one small job in a background thread once the
session exists (with Python code, so executors start Python workers), e.g. to meet "Initial job has not accepted any resources").
"""

import json
import os
import threading

from pyspark.sql import SparkSession

builder = SparkSession.builder.master(os.environ.get("TEST_SPARK_MASTER", "local[1]"))
builder = builder.appName(os.environ.get("TEST_SPARK_APP", "eager-kernel"))
for key, value in json.loads(os.environ.get("TEST_SPARK_CONF", "{}")).items():
    builder = builder.config(key, value)
spark = builder.getOrCreate()
print("SparkSession started:", spark.sparkContext.applicationId, flush=True)
if os.environ.get("TEST_SPARK_JOB") == "1":
    # a job with Python code in it, so that executors start Python workers too
    def job():
        rdd = spark.sparkContext.parallelize(range(10), 2).map(lambda x: x + 1)
        print("job result:", rdd.sum(), flush=True)

    threading.Thread(target=job, daemon=True).start()

from ipykernel.kernelapp import launch_new_instance  # noqa: E402

launch_new_instance(user_ns={"spark": spark, "sc": spark.sparkContext})
