/** Pure formatting helpers shared by the panel, the status bar and the admin view. */
import { IClusterInfo } from './api';

/** One line for the status bar, e.g. "Spark: 4 workers · 6/16 cores". */
export function statusText(info: IClusterInfo | null, error?: string | null): string {
  if (error) {
    return 'Spark: server extension unavailable';
  }
  if (!info) {
    return 'Spark: …';
  }
  if (!info.configured) {
    return 'Spark: not configured';
  }
  if (!info.master || !info.master.reachable) {
    return 'Spark: master unreachable';
  }
  const t = info.totals;
  const n = t.workers_alive;
  return `Spark: ${n} worker${n === 1 ? '' : 's'} · ${t.cores_used}/${t.cores} cores`;
}

/** "512 MiB", "1.5 GiB". */
export function formatMemory(mb: number | null | undefined): string {
  if (mb === null || mb === undefined || isNaN(mb)) {
    return '–';
  }
  if (mb >= 1024) {
    const g = mb / 1024;
    return `${Number.isInteger(g) ? g : g.toFixed(1)} GiB`;
  }
  return `${mb} MiB`;
}

/** "45s", "12m", "3h 5m", "2d 4h". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || isNaN(seconds) || seconds < 0) {
    return '–';
  }
  const s = Math.floor(seconds);
  if (s < 60) {
    return `${s}s`;
  }
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m}m`;
  }
  const h = Math.floor(m / 60);
  if (h < 24) {
    return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  }
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}

/** Fraction used/total clamped to [0, 1]; 0 when total is 0. */
export function fraction(used: number, total: number): number {
  if (!total || total <= 0 || !used || used < 0) {
    return 0;
  }
  return Math.min(1, used / total);
}

/**
 * Whether a kernelspec is a PySpark kernel of this project: its metadata has a
 * `jupyter_spark_openstack` section, or its name starts with "pyspark".
 */
export function isPySparkKernel(
  name: string | null | undefined,
  spec?: { metadata?: { [k: string]: unknown } } | null
): boolean {
  if (spec && spec.metadata && 'jupyter_spark_openstack' in spec.metadata) {
    return true;
  }
  return !!name && name.toLowerCase().startsWith('pyspark');
}

/**
 * Whether an iopub error (ename, evalue, traceback) means that the SparkSession
 * (or SparkContext) could not be created, as opposed to an ordinary error in
 * the user's code.
 */
const SESSION_FAILURE = [
  /JAVA_GATEWAY_EXITED/,
  /Java gateway process exited/i,
  /Py4JNetworkError/,
  /SparkSession.*getOrCreate|getOrCreate\(\)/,
  /SparkContext\(/,
  /Could not create SparkSession/i,
  /SparkConnectGrpcException/,
  /Failed to connect to master/i,
  /Initial job has not accepted any resources/i,
  // this project's kernel: jupyter_spark_openstack.kernel.session.SparkStartError
  /SparkStartError/,
  /SparkSession could not start/,
  /Connect(Auth|Unreachable)?Error/
];

export function isSessionFailure(
  ename: string,
  evalue: string,
  traceback: string[] = []
): boolean {
  const text = [ename, evalue, ...traceback].join('\n');
  return SESSION_FAILURE.some(re => re.test(text));
}
