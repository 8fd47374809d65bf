import { IClusterInfo } from '../src/api';

export function clusterInfo(over: Partial<IClusterInfo> = {}): IClusterInfo {
  return {
    configured: true,
    master: {
      url: 'spark://127.0.0.1:7077',
      webui_url: 'http://127.0.0.1:8080',
      ui_proxy_url: '/user/alice/spark-openstack/ui/master/',
      status: 'ALIVE',
      reachable: true,
      error: null
    },
    connect: null,
    workers: [
      { id: 'worker-1', host: '127.0.0.1', state: 'ALIVE', cores: 8, cores_used: 4, memory_mb: 8192, memory_used_mb: 2048 },
      { id: 'worker-2', host: '127.0.0.2', state: 'ALIVE', cores: 8, cores_used: 2, memory_mb: 8192, memory_used_mb: 0 },
      { id: 'worker-3', host: '127.0.0.3', state: 'DEAD', cores: 0, cores_used: 0, memory_mb: 0, memory_used_mb: 0 }
    ],
    apps: {
      active: [
        { id: 'app-1', name: 'etl', cores: 6, memory_per_executor_mb: 1024, duration_ms: 125000, ui_url: '/user/alice/spark-openstack/ui/app/app-1/' },
        { id: 'app-2', name: 'adhoc', cores: 0, memory_per_executor_mb: 512, duration_ms: 1000, ui_url: null }
      ],
      completed: []
    },
    totals: { workers_alive: 2, cores: 16, cores_used: 6, memory_mb: 16384, memory_used_mb: 2048 },
    refresh_interval: 5,
    fetched_at: 1764090000.5,
    ...over
  };
}
