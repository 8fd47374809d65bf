/**
 * Types and a small client for the server extension's REST API
 * (see the `spark-openstack/api/...` contract). The client takes a `request`
 * function so that it can be used with JupyterLab's ServerConnection in the
 * app and with a plain stub in unit tests.
 */

export interface IMaster {
  url: string | null;
  webui_url: string | null;
  ui_proxy_url: string | null;
  status: string | null;
  reachable: boolean;
  error: string | null;
}

export interface IWorker {
  id: string;
  host: string;
  state: string;
  cores: number;
  cores_used: number;
  memory_mb: number;
  memory_used_mb: number;
  last_heartbeat?: number | null;
}

export interface IApp {
  id: string;
  name: string;
  user?: string;
  cores: number;
  memory_per_executor_mb?: number;
  start_time?: number;
  duration_ms?: number;
  ui_url?: string | null;
}

export interface ITotals {
  workers_alive: number;
  cores: number;
  cores_used: number;
  memory_mb: number;
  memory_used_mb: number;
}

export interface IClusterInfo {
  configured: boolean;
  master: IMaster | null;
  connect?: { url: string; reachable: boolean } | null;
  workers: IWorker[];
  apps: { active: IApp[]; completed: IApp[] };
  totals: ITotals;
  refresh_interval: number;
  fetched_at?: number;
}

export interface IDiagnostics {
  kernel_id: string;
  kernel_name?: string;
  alive?: boolean;
  category: string;
  title?: string;
  explanation: string;
  fix: string;
  evidence: string[];
  log_paths?: string[];
  log_text?: string;
}

export interface IAdminCluster {
  user: string;
  server_name: string;
  state: string;
  workers: number | null;
  cores: number | null;
  memory_mb?: number | null;
  started?: string | null;
  age_seconds?: number | null;
  master_url?: string | null;
}

/** The answer of a request: HTTP status and parsed JSON body (or null). */
export interface IResponse {
  status: number;
  body: any;
}

export type RequestFn = (
  path: string,
  init?: { method?: string }
) => Promise<IResponse>;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

function check(res: IResponse, what: string): any {
  if (res.status >= 200 && res.status < 300) {
    return res.body;
  }
  const msg =
    (res.body && (res.body.message || res.body.reason)) || `HTTP ${res.status}`;
  throw new ApiError(res.status, `${what}: ${msg}`);
}

export class SparkApi {
  constructor(private readonly request: RequestFn) {}

  async cluster(): Promise<IClusterInfo> {
    return check(await this.request('spark-openstack/api/cluster'), 'cluster');
  }

  async diagnostics(kernelId: string): Promise<IDiagnostics> {
    return check(
      await this.request(
        `spark-openstack/api/kernels/${encodeURIComponent(kernelId)}/diagnostics`
      ),
      'diagnostics'
    );
  }

  /** The admin cluster list; null when this user is not a hub admin (403/404). */
  async adminClusters(): Promise<IAdminCluster[] | null> {
    const res = await this.request('spark-openstack/api/admin/clusters');
    if (res.status === 403 || res.status === 404) {
      return null;
    }
    return check(res, 'admin clusters').clusters;
  }

  async stopCluster(user: string, serverName = ''): Promise<void> {
    let path = `spark-openstack/api/admin/clusters/${encodeURIComponent(user)}`;
    if (serverName) {
      path += `/${encodeURIComponent(serverName)}`;
    }
    check(await this.request(path, { method: 'DELETE' }), `stop ${user}`);
  }
}
