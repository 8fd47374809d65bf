import { Signal } from '@lumino/signaling';
import { IDiagnostics, SparkApi } from '../src/api';
import { DeadKernelWatcher } from '../src/watcher';

class FakeContext {
  session: { kernel: { id: string; name: string } | null } | null;
  specsManager: any;
  statusChanged = new Signal<any, string>(this);
  connectionStatusChanged = new Signal<any, string>(this);
  iopubMessage = new Signal<any, any>(this);
  constructor(id: string, name: string, metadata: any = {}) {
    this.session = { kernel: { id, name } };
    this.specsManager = { specs: { kernelspecs: { [name]: { name, metadata } } } };
  }
}

function diag(id: string): IDiagnostics {
  return { kernel_id: id, category: 'missing-ipykernel', explanation: 'e', fix: 'f', evidence: ['x'] };
}

function setup(statusFor: (n: number) => number = () => 200) {
  const requested: string[] = [];
  const shown: [IDiagnostics, string][] = [];
  const api = new SparkApi(async path => {
    requested.push(path);
    const id = path.split('/')[3];
    const status = statusFor(requested.length);
    return { status, body: status === 200 ? diag(id) : { message: 'no such kernel' } };
  });
  const watcher = new DeadKernelWatcher(api, (d, r) => void shown.push([d, r]), { attempts: 3, delayMs: 1 }, { delayMs: 5, intervalMs: 5, maxMs: 2000 });
  return { watcher, requested, shown };
}

const tick = () => new Promise(r => setTimeout(r, 20));

/** Wait until cond() holds (the machine may be busy: no fixed sleeps for positive checks). */
async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) {
    await new Promise(r => setTimeout(r, 5));
  }
}

describe('DeadKernelWatcher', () => {
  it('fetches the diagnosis and shows it once when a PySpark kernel dies', async () => {
    const { watcher, requested, shown } = setup();
    const ctx = new FakeContext('k1', 'spark-alice', { jupyter_spark_openstack: {} });
    watcher.watch(ctx);
    ctx.statusChanged.emit('starting');
    ctx.statusChanged.emit('autorestarting');
    ctx.statusChanged.emit('dead');
    ctx.connectionStatusChanged.emit('disconnected');
    await waitFor(() => shown.length === 1);
    await tick();
    expect(requested).toEqual(['spark-openstack/api/kernels/k1/diagnostics']);
    expect(shown.length).toBe(1);
    expect(shown[0][0].category).toBe('missing-ipykernel');
    expect(shown[0][1]).toBe('kernel autorestarting');
    // alive again, then dead again: a new episode
    ctx.statusChanged.emit('idle');
    ctx.statusChanged.emit('dead');
    await waitFor(() => shown.length === 2);
    expect(shown.length).toBe(2);
  });

  it('shows nothing when the server says the kernel is fine (restarted)', async () => {
    const shown: unknown[] = [];
    const api = new SparkApi(async () => ({ status: 200, body: { ...diag('k9'), category: 'ok' } }));
    const watcher = new DeadKernelWatcher(api, d => void shown.push(d), { attempts: 1, delayMs: 1 });
    const ctx = new FakeContext('k9', 'pyspark');
    watcher.watch(ctx);
    ctx.statusChanged.emit('autorestarting');
    await tick();
    expect(shown).toEqual([]);
  });

  it('still explains a SparkSession failure the server has no rule for', async () => {
    const shown: IDiagnostics[] = [];
    const api = new SparkApi(async () => ({ status: 200, body: { ...diag('k8'), category: 'ok', evidence: [] } }));
    const watcher = new DeadKernelWatcher(api, d => void shown.push(d), { attempts: 1, delayMs: 1 });
    const ctx = new FakeContext('k8', 'pyspark');
    watcher.watch(ctx);
    ctx.iopubMessage.emit({
      header: { msg_type: 'error' },
      content: { ename: 'SparkStartError', evalue: 'SparkSession could not start: master gone', traceback: [] }
    });
    await waitFor(() => shown.length === 1);
    expect(shown[0].category).toBe('unknown');
    expect(shown[0].title).toBe('SparkSession could not start');
    expect(shown[0].evidence).toEqual(['SparkStartError: SparkSession could not start: master gone']);
  });

  it('ignores kernels that are not PySpark kernels', async () => {
    const { watcher, requested, shown } = setup();
    const ctx = new FakeContext('k2', 'python3', { debugger: true });
    watcher.watch(ctx);
    ctx.statusChanged.emit('dead');
    await tick();
    expect(requested).toEqual([]);
    expect(shown).toEqual([]);
  });

  it('reacts to a SparkSession failure on iopub, not to ordinary errors', async () => {
    const { watcher, shown } = setup();
    const ctx = new FakeContext('k3', 'pyspark');
    watcher.watch(ctx);
    ctx.iopubMessage.emit({ header: { msg_type: 'error' }, content: { ename: 'NameError', evalue: 'x', traceback: [] } });
    await tick();
    expect(shown.length).toBe(0);
    ctx.iopubMessage.emit({
      header: { msg_type: 'error' },
      content: { ename: 'PySparkRuntimeError', evalue: '[JAVA_GATEWAY_EXITED] Java gateway process exited before sending its port number.', traceback: [] }
    });
    await waitFor(() => shown.length === 1);
    expect(shown.length).toBe(1);
    expect(shown[0][1]).toBe('SparkSession failed');
  });

  it('retries while the diagnosis is not there yet, then falls back to a generic one', async () => {
    let s = setup(n => (n < 2 ? 404 : 200));
    let ctx = new FakeContext('k4', 'pyspark');
    s.watcher.watch(ctx);
    ctx.statusChanged.emit('dead');
    await waitFor(() => s.shown.length === 1);
    expect(s.requested.length).toBe(2);
    expect(s.shown[0][0].category).toBe('missing-ipykernel');

    s = setup(() => 404);
    ctx = new FakeContext('k5', 'pyspark');
    s.watcher.watch(ctx);
    ctx.statusChanged.emit('dead');
    await waitFor(() => s.shown.length === 1);
    expect(s.requested.length).toBe(3);
    expect(s.shown[0][0].category).toBe('unknown');
    expect(s.shown[0][0].kernel_id).toBe('k5');
  });

  it('classifies a starting kernel early and stops once it is diagnosed', async () => {
    const categories = ['ok', 'ok', 'missing-ipykernel'];
    const requested: string[] = [];
    const shown: [IDiagnostics, string][] = [];
    const api = new SparkApi(async path => {
      requested.push(path);
      const category = categories[Math.min(requested.length - 1, categories.length - 1)];
      return { status: 200, body: { ...diag('k6'), category } };
    });
    const watcher = new DeadKernelWatcher(api, (d, r) => void shown.push([d, r]), { attempts: 1, delayMs: 1 },
      { delayMs: 5, intervalMs: 5, maxMs: 5000 });
    const ctx = new FakeContext('k6', 'pyspark');
    watcher.watch(ctx);
    ctx.statusChanged.emit('starting');
    await waitFor(() => shown.length === 1);
    await tick();
    expect(shown.length).toBe(1);
    expect(shown[0][0].category).toBe('missing-ipykernel');
    expect(shown[0][1]).toBe('kernel failed to start');
    const n = requested.length;
    expect(n).toBe(3);
    // the later 'dead' of the same kernel shows nothing more
    ctx.statusChanged.emit('dead');
    await new Promise(r => setTimeout(r, 50));
    expect(shown.length).toBe(1);
  });

  it('stops probing when the kernel comes up', async () => {
    const { watcher, requested, shown } = setup();
    const ctx = new FakeContext('k7', 'pyspark');
    watcher.watch(ctx);
    ctx.statusChanged.emit('starting');
    ctx.statusChanged.emit('idle');
    await new Promise(r => setTimeout(r, 50));
    expect(requested).toEqual([]);
    expect(shown).toEqual([]);
  });
});
