import { formatDuration, formatMemory, fraction, isPySparkKernel, isSessionFailure, statusText } from '../src/format';
import { clusterInfo } from './fixtures';

describe('statusText', () => {
  it('shows alive workers and used/total cores', () => {
    expect(statusText(clusterInfo())).toBe('Spark: 2 workers · 6/16 cores');
  });
  it('says "1 worker" in the singular', () => {
    const info = clusterInfo();
    info.totals = { workers_alive: 1, cores: 4, cores_used: 0, memory_mb: 1, memory_used_mb: 0 };
    expect(statusText(info)).toBe('Spark: 1 worker · 0/4 cores');
  });
  it('shows the unreachable master plainly', () => {
    const info = clusterInfo();
    info.master!.reachable = false;
    expect(statusText(info)).toBe('Spark: master unreachable');
  });
  it('shows not configured, loading and API errors', () => {
    expect(statusText(clusterInfo({ configured: false, master: null }))).toBe('Spark: not configured');
    expect(statusText(null)).toBe('Spark: …');
    expect(statusText(clusterInfo(), 'HTTP 404')).toBe('Spark: server extension unavailable');
  });
});

describe('formatting', () => {
  it('formats memory', () => {
    expect(formatMemory(512)).toBe('512 MiB');
    expect(formatMemory(2048)).toBe('2 GiB');
    expect(formatMemory(1536)).toBe('1.5 GiB');
    expect(formatMemory(null)).toBe('–');
  });
  it('formats durations', () => {
    expect(formatDuration(45)).toBe('45s');
    expect(formatDuration(125)).toBe('2m');
    expect(formatDuration(3600 + 300)).toBe('1h 5m');
    expect(formatDuration(2 * 86400 + 4 * 3600)).toBe('2d 4h');
    expect(formatDuration(undefined)).toBe('–');
  });
  it('clamps fractions', () => {
    expect(fraction(6, 16)).toBeCloseTo(0.375);
    expect(fraction(5, 0)).toBe(0);
    expect(fraction(20, 10)).toBe(1);
  });
});

describe('isPySparkKernel', () => {
  it('recognizes kernelspec metadata and pyspark names', () => {
    expect(isPySparkKernel('mykernel', { metadata: { jupyter_spark_openstack: { master_url: 'x' } } })).toBe(true);
    expect(isPySparkKernel('pyspark-alice', {})).toBe(true);
    expect(isPySparkKernel('PySpark', null)).toBe(true);
    expect(isPySparkKernel('python3', { metadata: { debugger: true } })).toBe(false);
    expect(isPySparkKernel(null)).toBe(false);
  });
});

describe('isSessionFailure', () => {
  it('detects SparkSession creation failures', () => {
    expect(isSessionFailure('PySparkRuntimeError', '[JAVA_GATEWAY_EXITED] Java gateway process exited before sending its port number.')).toBe(true);
    expect(isSessionFailure('Py4JJavaError', 'An error occurred while calling None.org.apache.spark.api.java.JavaSparkContext.', ['  spark = SparkSession.builder.getOrCreate()'])).toBe(true);
  });
  it("detects this project's kernel's SparkStartError", () => {
    expect(isSessionFailure('SparkStartError', 'SparkSession could not start: master spark://127.0.0.1:1 unreachable')).toBe(true);
    expect(isSessionFailure('ConnectUnreachableError', 'no answer from sc://127.0.0.1:15002')).toBe(true);
  });
  it('ignores ordinary user errors', () => {
    expect(isSessionFailure('NameError', "name 'x' is not defined")).toBe(false);
    expect(isSessionFailure('AnalysisException', '[UNRESOLVED_COLUMN] A column cannot be resolved', ['df.select("nope")'])).toBe(false);
  });
});
