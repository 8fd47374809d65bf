/**
 * The cluster state shared by the sidebar panel and the status bar: one poll of
 * `GET spark-openstack/api/cluster`, repeated at the `refresh_interval` the
 * server announces in each answer.
 */
import { ISignal, Signal } from '@lumino/signaling';
import { IClusterInfo, SparkApi } from './api';

export const DEFAULT_INTERVAL_S = 5;
export const MIN_INTERVAL_S = 1;

export class ClusterModel {
  constructor(private readonly api: SparkApi) {}

  get info(): IClusterInfo | null {
    return this._info;
  }

  /** The error of the last request (server extension missing, 5xx, network), or null. */
  get error(): string | null {
    return this._error;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Seconds until the next poll, from the last answer (or the default). */
  get intervalSeconds(): number {
    const s = this._info?.refresh_interval;
    return typeof s === 'number' && s > 0 ? Math.max(MIN_INTERVAL_S, s) : DEFAULT_INTERVAL_S;
  }

  /** Start polling (idempotent). */
  start(): void {
    if (this._running) {
      return;
    }
    this._running = true;
    void this.refresh();
  }

  stop(): void {
    this._running = false;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  /** Fetch now; reschedules the next poll. */
  async refresh(): Promise<void> {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    try {
      this._info = await this.api.cluster();
      this._error = null;
    } catch (e) {
      this._error = (e as Error).message || String(e);
    }
    this._changed.emit();
    if (this._running) {
      this._timer = setTimeout(() => {
        this._timer = null;
        void this.refresh();
      }, this.intervalSeconds * 1000);
    }
  }

  private _info: IClusterInfo | null = null;
  private _error: string | null = null;
  private _running = false;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _changed = new Signal<this, void>(this);
}
