import { renderAdmin, renderCluster, renderDiagnostics } from '../src/render';
import { clusterInfo } from './fixtures';

describe('renderCluster', () => {
  it('lists every worker with state and cores/memory bars', () => {
    const el = renderCluster(clusterInfo());
    const rows = Array.from(el.querySelectorAll('tr.jso-worker'));
    expect(rows.map(r => r.getAttribute('data-worker-id'))).toEqual(['worker-1', 'worker-2', 'worker-3']);
    const first = rows[0];
    expect(first.querySelector('.jso-worker-host')!.textContent).toBe('127.0.0.1');
    expect(first.querySelector('.jso-worker-state')!.textContent).toBe('ALIVE');
    const bars = first.querySelectorAll('.jso-bar');
    expect(bars[0].textContent).toBe('4/8 cores');
    expect((bars[0].querySelector('.jso-bar-fill') as HTMLElement).style.width).toBe('50%');
    expect(bars[1].textContent).toBe('2 GiB / 8 GiB');
    expect((bars[1].querySelector('.jso-bar-fill') as HTMLElement).style.width).toBe('25%');
    expect(rows[2].querySelector('.jso-worker-state')!.className).toContain('jso-worker-other');
  });

  it('shows master status, proxy link and running apps with UI links', () => {
    const el = renderCluster(clusterInfo());
    expect(el.querySelector('.jso-master-status')!.textContent).toBe('ALIVE');
    expect(el.querySelector('.jso-master-link')!.getAttribute('href')).toBe('/user/alice/spark-openstack/ui/master/');
    const apps = el.querySelectorAll('li.jso-app');
    expect(apps.length).toBe(2);
    const link = apps[0].querySelector('a')!;
    expect(link.getAttribute('href')).toBe('/user/alice/spark-openstack/ui/app/app-1/');
    expect(link.textContent).toBe('etl');
    expect(apps[0].textContent).toContain('6 cores · 1 GiB/executor · 2m');
    expect(apps[1].querySelector('a')).toBeNull();
  });

  it('has clear unreachable, empty, not-configured and error states', () => {
    const down = clusterInfo();
    down.master!.reachable = false;
    down.master!.error = 'Connection refused';
    let el = renderCluster(down);
    expect(el.querySelector('.jso-master-status')!.textContent).toBe('UNREACHABLE');
    expect(el.querySelector('.jso-state-unreachable')!.textContent).toContain('Connection refused');
    expect(el.querySelector('.jso-workers')).toBeNull();

    el = renderCluster(clusterInfo({ workers: [], apps: { active: [], completed: [] } }));
    expect(el.textContent).toContain('No workers registered');
    expect(el.textContent).toContain('No running applications');

    el = renderCluster(clusterInfo({ configured: false, master: null }));
    expect(el.className).toContain('jso-state-notconfigured');

    el = renderCluster(null, 'cluster: HTTP 404');
    expect(el.className).toContain('jso-state-error');
    expect(el.textContent).toContain('HTTP 404');
  });
});

describe('renderDiagnostics', () => {
  it('shows category, explanation, fix, evidence and log paths', () => {
    const el = renderDiagnostics({
      kernel_id: 'k1',
      category: 'missing-ipykernel',
      explanation: 'The interpreter cannot import ipykernel.',
      fix: 'pip install ipykernel into that interpreter.',
      evidence: ["ModuleNotFoundError: No module named 'ipykernel'", 'line 2'],
      log_paths: ['/tmp/kernel-k1.log']
    });
    expect(el.getAttribute('data-category')).toBe('missing-ipykernel');
    expect(el.getAttribute('data-kernel-id')).toBe('k1');
    expect(el.querySelector('.jso-diag-category code')!.textContent).toBe('missing-ipykernel');
    expect(el.querySelector('.jso-diag-explanation')!.textContent).toBe('The interpreter cannot import ipykernel.');
    expect(el.querySelector('.jso-diag-fix')!.textContent).toBe('Fix: pip install ipykernel into that interpreter.');
    expect(el.querySelector('.jso-diag-evidence')!.textContent).toBe("ModuleNotFoundError: No module named 'ipykernel'\nline 2");
    expect(el.querySelector('.jso-diag-logs')!.textContent).toContain('/tmp/kernel-k1.log');
  });
});

describe('renderAdmin', () => {
  it('lists every cluster and calls onStop with the row', () => {
    const stopped: string[] = [];
    const el = renderAdmin(
      [
        { user: 'alice', server_name: '', state: 'running', workers: 2, cores: 4, age_seconds: 3700 },
        { user: 'bob', server_name: 'big', state: 'stopped', workers: null, cores: null, age_seconds: null }
      ],
      c => stopped.push(c.user + '/' + c.server_name)
    );
    const rows = el.querySelectorAll('tr.jso-admin-row');
    expect(rows.length).toBe(2);
    expect(Array.from(rows[0].querySelectorAll('td')).map(td => td.textContent)).toEqual(['alice', '2', '4', '1h 1m', 'running', 'Stop']);
    expect(rows[1].querySelector('.jso-admin-user')!.textContent).toBe('bob/big');
    expect((rows[1].querySelector('button') as HTMLButtonElement).disabled).toBe(true);
    (rows[0].querySelector('button') as HTMLButtonElement).click();
    expect(stopped).toEqual(['alice/']);
  });
  it('says so when nobody has a cluster', () => {
    expect(renderAdmin([], () => undefined).textContent).toBe('No user has a Spark cluster');
  });
});
