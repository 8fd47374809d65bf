import { IProgressPayload, formatBytes, renderProgress } from '../src/progress';

function payload(done: boolean): IProgressPayload {
  return {
    version: 1,
    kernel: 'connect',
    done,
    elapsed_s: 3.2,
    ui: 'spark-openstack/ui/app/app-1/',
    summary: 'Spark: 1 Spark operation · 200/200 tasks · 1.5 MiB read · 3.2 s',
    operations: [
      {
        key: 'op-1',
        label: 'Operation 1',
        done: false,
        elapsed_s: 2.5,
        tasks: 200,
        completed: 50,
        running: 4,
        bytes_read: 1536 * 1024,
        link: 'spark-openstack/ui/app/app-1/stages/stage/?id=3&attempt=0',
        stages: [{ id: 3, tasks: 200, completed: 50, bytes_read: 1536 * 1024, done: false }]
      }
    ]
  };
}

describe('renderProgress', () => {
  it('shows each operation live: stage, tasks bar, running, bytes, elapsed and a UI link', () => {
    const el = renderProgress(payload(false), '/user/alice/');
    const rows = el.querySelectorAll('.jso-progress-op');
    expect(rows.length).toBe(1);
    const a = rows[0].querySelector('a')!;
    expect(a.textContent).toBe('Operation 1');
    expect(a.getAttribute('href')).toBe('/user/alice/spark-openstack/ui/app/app-1/stages/stage/?id=3&attempt=0');
    expect(rows[0].querySelector('.jso-progress-stage')!.textContent).toBe('stage 3');
    expect(rows[0].querySelector('.jso-progress-tasks')!.textContent).toBe('50/200 tasks');
    expect((rows[0].querySelector('.jso-bar-fill') as HTMLElement).style.width).toBe('25%');
    expect(rows[0].querySelector('.jso-progress-meta')!.textContent).toBe('4 running · 1.5 MiB read · 2.5 s');
  });

  it('becomes the one-line summary when the cell ends', () => {
    const el = renderProgress(payload(true), '/user/alice/');
    expect(el.querySelectorAll('.jso-progress-op').length).toBe(0);
    expect(el.textContent).toBe('Spark: 1 Spark operation · 200/200 tasks · 1.5 MiB read · 3.2 s');
    expect(el.querySelector('a')!.getAttribute('href')).toBe('/user/alice/spark-openstack/ui/app/app-1/jobs/');
  });

  it('writes no markup from the kernel: labels are text', () => {
    const p = payload(false);
    p.operations[0].label = '<img src=x onerror=alert(1)>';
    const el = renderProgress(p, '/');
    expect(el.querySelector('img')).toBeNull();
    expect(el.querySelector('a')!.textContent).toBe('<img src=x onerror=alert(1)>');
  });

  it('formats bytes as the kernel does', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536 * 1024)).toBe('1.5 MiB');
    expect(formatBytes(null)).toBe('');
  });
});
