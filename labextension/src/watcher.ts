/**
 * Watches the session contexts of notebooks and consoles; when a PySpark
 * kernel dies (status 'autorestarting' or 'dead', or the connection drops
 * while dead) or an error says its SparkSession could not be created, fetches
 * `spark-openstack/api/kernels/{id}/diagnostics` and shows the diagnosis.
 */
import { IDiagnostics, SparkApi } from './api';
import { isPySparkKernel, isSessionFailure } from './format';

/** The part of ISessionContext the watcher uses (structural, for tests). */
export interface IWatchedSession {
  readonly session: { kernel: { id: string; name: string } | null } | null;
  readonly specsManager: { specs: { kernelspecs: { [k: string]: any } } | null };
  readonly statusChanged: { connect(fn: (s: any, status: string) => void): any };
  readonly connectionStatusChanged: { connect(fn: (s: any, status: string) => void): any };
  readonly iopubMessage: { connect(fn: (s: any, msg: any) => void): any };
  readonly isDisposed?: boolean;
}

export type ShowFn = (d: IDiagnostics, reason: string) => Promise<void> | void;

/**
 * While a PySpark kernel is starting (or being restarted by the server), its captured
 * output is classified every `intervalMs`: a kernel that cannot start (no ipykernel, no
 * Java, ...) is explained at once, not only after the server's restart attempts are used
 * up and JupyterLab finally reports it 'dead'.
 */
export interface IProbeOptions {
  delayMs: number;
  intervalMs: number;
  maxMs: number;
}

const STARTING = new Set(['starting', 'unknown', 'restarting', 'autorestarting']);
const ALIVE = new Set(['idle', 'busy']);

export class DeadKernelWatcher {
  constructor(
    private readonly api: SparkApi,
    private readonly show: ShowFn,
    private readonly retry = { attempts: 4, delayMs: 250 },
    private readonly probeOptions: IProbeOptions = { delayMs: 300, intervalMs: 400, maxMs: 60000 }
  ) {}

  watch(ctx: IWatchedSession): void {
    let lastStatus = '';
    ctx.statusChanged.connect((_, status) => {
      lastStatus = status;
      if (STARTING.has(status)) {
        this.probe(ctx);
      } else {
        this.stopProbe(ctx);
      }
      if (status === 'autorestarting' || status === 'dead') {
        void this.trigger(ctx, `kernel ${status}`);
      } else if (ALIVE.has(status)) {
        // The kernel is alive (again): a later death is a new episode.
        const k = ctx.session?.kernel;
        if (k) {
          this._handled.delete(k.id);
        }
      }
    });
    ctx.connectionStatusChanged.connect((_, status) => {
      if (status === 'disconnected' && lastStatus === 'dead') {
        void this.trigger(ctx, 'connection lost');
      }
    });
    ctx.iopubMessage.connect((_, msg) => {
      if (msg?.header?.msg_type !== 'error') {
        return;
      }
      const c = msg.content || {};
      if (isSessionFailure(c.ename || '', c.evalue || '', c.traceback || [])) {
        void this.trigger(ctx, 'SparkSession failed', true, `${c.ename}: ${c.evalue}`);
      }
    });
  }

  /** Classify a starting kernel's output until it is alive, diagnosed or `maxMs` passed. */
  probe(ctx: IWatchedSession): void {
    const kernel = ctx.session?.kernel;
    if (!kernel || this._probes.has(ctx) || this._handled.has(kernel.id)) {
      return;
    }
    const spec = ctx.specsManager.specs?.kernelspecs?.[kernel.name];
    if (!isPySparkKernel(kernel.name, spec)) {
      return;
    }
    const started = Date.now();
    const id = kernel.id;
    const step = async () => {
      if (!this._probes.has(ctx) || Date.now() - started > this.probeOptions.maxMs) {
        this._probes.delete(ctx);
        return;
      }
      try {
        const d = await this.api.diagnostics(id);
        if (this._probes.has(ctx) && d.category !== 'ok' && d.category !== 'unknown' && !this._handled.has(id)) {
          this._probes.delete(ctx);
          this._handled.add(id);
          await this.show(d, 'kernel failed to start');
          return;
        }
      } catch {
        // no log yet (404) or the server is busy: try again
      }
      if (this._probes.has(ctx)) {
        this._probes.set(ctx, setTimeout(step, this.probeOptions.intervalMs));
      }
    };
    this._probes.set(ctx, setTimeout(step, this.probeOptions.delayMs));
  }

  stopProbe(ctx: IWatchedSession): void {
    const t = this._probes.get(ctx);
    if (t !== undefined) {
      clearTimeout(t);
      this._probes.delete(ctx);
    }
  }

  /** Diagnose the context's kernel if it is a PySpark kernel; at most once per episode. */
  async trigger(
    ctx: IWatchedSession,
    reason: string,
    force = false,
    error: string | null = null
  ): Promise<IDiagnostics | null> {
    const kernel = ctx.session?.kernel;
    if (!kernel) {
      return null;
    }
    const spec = ctx.specsManager.specs?.kernelspecs?.[kernel.name];
    if (!isPySparkKernel(kernel.name, spec)) {
      return null;
    }
    if (this._handled.has(kernel.id) && !force) {
      return null;
    }
    this._handled.add(kernel.id);
    let diag: IDiagnostics | null = null;
    for (let i = 0; i < this.retry.attempts; i++) {
      try {
        diag = await this.api.diagnostics(kernel.id);
        break;
      } catch (e) {
        // The log may not be flushed yet (404): try again shortly.
        await new Promise(r => setTimeout(r, this.retry.delayMs));
      }
    }
    if (!diag) {
      diag = {
        kernel_id: kernel.id,
        kernel_name: kernel.name,
        category: 'unknown',
        explanation: 'The kernel died and the server extension gave no diagnosis for it.',
        fix: 'Run `jupyter-spark-openstack doctor` in a terminal and read the kernel log.',
        evidence: []
      };
    }
    if (error !== null && diag.category === 'ok') {
      // the kernel runs, but its SparkSession failed for a reason no rule knows: still say so
      diag = {
        ...diag,
        category: 'unknown',
        title: 'SparkSession could not start',
        explanation:
          "The kernel's SparkSession could not start, and the server found no known cause in the kernel's logs.",
        fix: 'Read the error and the kernel log; `jupyter-spark-openstack doctor` checks Java, SPARK_HOME, the kernelspecs and the master.',
        evidence: [error, ...(diag.evidence || [])]
      };
    }
    if (diag.category === 'ok') {
      // the server found the kernel running with no known failure (it restarted fine)
      this._handled.delete(kernel.id);
      return diag;
    }
    await this.show(diag, reason);
    return diag;
  }

  private _handled = new Set<string>();
  private _probes = new Map<IWatchedSession, ReturnType<typeof setTimeout>>();
}
