import { IResponse, SparkApi } from '../src/api';
import { ClusterModel } from '../src/model';
import { clusterInfo } from './fixtures';

function flush(): Promise<void> {
  return new Promise(r => jest.requireActual('timers').setImmediate(r));
}

describe('ClusterModel', () => {
  afterEach(() => jest.useRealTimers());

  it('polls at the refresh_interval the server announces', async () => {
    jest.useFakeTimers();
    const calls: string[] = [];
    let interval = 2;
    const api = new SparkApi(async (path): Promise<IResponse> => {
      calls.push(path);
      return { status: 200, body: clusterInfo({ refresh_interval: interval }) };
    });
    const model = new ClusterModel(api);
    let changes = 0;
    model.changed.connect(() => changes++);
    model.start();
    await flush();
    expect(calls).toEqual(['spark-openstack/api/cluster']);
    expect(model.info!.totals.cores).toBe(16);
    jest.advanceTimersByTime(1900);
    await flush();
    expect(calls.length).toBe(1);
    interval = 10;
    jest.advanceTimersByTime(200);
    await flush();
    expect(calls.length).toBe(2);
    // the new answer says 10 s
    jest.advanceTimersByTime(9000);
    await flush();
    expect(calls.length).toBe(2);
    jest.advanceTimersByTime(1100);
    await flush();
    expect(calls.length).toBe(3);
    expect(changes).toBe(3);
    model.stop();
    jest.advanceTimersByTime(60000);
    await flush();
    expect(calls.length).toBe(3);
  });

  it('keeps the error of a failed request and recovers', async () => {
    let status = 500;
    const api = new SparkApi(async () => ({ status, body: status === 200 ? clusterInfo() : { message: 'boom' } }));
    const model = new ClusterModel(api);
    await model.refresh();
    expect(model.error).toBe('cluster: boom');
    status = 200;
    await model.refresh();
    expect(model.error).toBeNull();
    expect(model.info!.workers.length).toBe(3);
  });
});

describe('SparkApi', () => {
  it('maps 403 on the admin list to null and sends DELETE for stop', async () => {
    const seen: string[] = [];
    let status = 403;
    const api = new SparkApi(async (path, init) => {
      seen.push(`${init?.method || 'GET'} ${path}`);
      return { status, body: status === 200 ? { clusters: [] } : { message: 'hub admins only' } };
    });
    expect(await api.adminClusters()).toBeNull();
    status = 200;
    expect(await api.adminClusters()).toEqual([]);
    status = 202;
    await api.stopCluster('alice');
    await api.stopCluster('bob', 'big one');
    status = 403;
    await expect(api.stopCluster('carol')).rejects.toThrow('stop carol: hub admins only');
    expect(seen).toEqual([
      'GET spark-openstack/api/admin/clusters',
      'GET spark-openstack/api/admin/clusters',
      'DELETE spark-openstack/api/admin/clusters/alice',
      'DELETE spark-openstack/api/admin/clusters/bob/big%20one',
      'DELETE spark-openstack/api/admin/clusters/carol'
    ]);
  });
});
