/**
 * DOM rendering of the cluster view, the diagnostics dialog body and the admin
 * table. Pure functions of their input (no JupyterLab imports), so they are
 * unit-tested in jsdom.
 */
import { IAdminCluster, IApp, IClusterInfo, IDiagnostics, IWorker } from './api';
import { formatDuration, formatMemory, fraction } from './format';

type Attrs = { [k: string]: string };

export function h(
  tag: string,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') {
      el.className = v;
    } else {
      el.setAttribute(k, v);
    }
  }
  for (const c of children) {
    if (c === null || c === undefined) {
      continue;
    }
    el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return el;
}

/** A horizontal bar "used / total" with a text label. */
export function bar(used: number, total: number, label: string): HTMLElement {
  const pct = Math.round(fraction(used, total) * 100);
  const fill = h('div', { class: 'jso-bar-fill', style: `width: ${pct}%` });
  return h(
    'div',
    {
      class: 'jso-bar',
      role: 'meter',
      'aria-valuemin': '0',
      'aria-valuemax': String(total),
      'aria-valuenow': String(used),
      title: label
    },
    fill,
    h('span', { class: 'jso-bar-label' }, label)
  );
}

function state(msgClass: string, title: string, detail?: string | null): HTMLElement {
  return h(
    'div',
    { class: `jso-state ${msgClass}` },
    h('div', { class: 'jso-state-title' }, title),
    detail ? h('div', { class: 'jso-state-detail' }, detail) : null
  );
}

function workerRow(w: IWorker): HTMLElement {
  const alive = w.state === 'ALIVE';
  return h(
    'tr',
    { class: 'jso-worker', 'data-worker-id': w.id },
    h(
      'td',
      { class: 'jso-worker-id', title: w.id },
      h('div', { class: 'jso-worker-host' }, w.host),
      h('div', { class: `jso-worker-state jso-worker-${alive ? 'alive' : 'other'}` }, w.state)
    ),
    h(
      'td',
      { class: 'jso-worker-usage' },
      bar(w.cores_used, w.cores, `${w.cores_used}/${w.cores} cores`),
      bar(
        w.memory_used_mb,
        w.memory_mb,
        `${formatMemory(w.memory_used_mb)} / ${formatMemory(w.memory_mb)}`
      )
    )
  );
}

function appItem(a: IApp): HTMLElement {
  const name = a.ui_url
    ? h('a', { href: a.ui_url, target: '_blank', rel: 'noopener', class: 'jso-app-link' }, a.name || a.id)
    : h('span', {}, a.name || a.id);
  const dur =
    a.duration_ms !== undefined && a.duration_ms !== null
      ? formatDuration(a.duration_ms / 1000)
      : '–';
  return h(
    'li',
    { class: 'jso-app', 'data-app-id': a.id },
    name,
    h(
      'span',
      { class: 'jso-app-meta' },
      ` ${a.cores} core${a.cores === 1 ? '' : 's'} · ${formatMemory(a.memory_per_executor_mb)}/executor · ${dur}`
    )
  );
}

/**
 * The sidebar panel's content for one answer of `GET spark-openstack/api/cluster`
 * (or the error of that request).
 */
export function renderCluster(info: IClusterInfo | null, error?: string | null): HTMLElement {
  if (error) {
    return state(
      'jso-state-error',
      'Cannot reach the Spark server extension',
      error
    );
  }
  if (!info) {
    return state('jso-state-loading', 'Loading…');
  }
  if (!info.configured) {
    return state(
      'jso-state-notconfigured',
      'No Spark cluster is configured for this server',
      'Start this server from JupyterHub with a Spark cluster, or set SPARK_OPENSTACK_MASTER_URL / a PySpark kernelspec.'
    );
  }
  const m = info.master!;
  const root = h('div', { class: 'jso-cluster' });
  const masterLink = m.ui_proxy_url
    ? h('a', { href: m.ui_proxy_url, target: '_blank', rel: 'noopener', class: 'jso-master-link' }, 'Master UI')
    : null;
  root.appendChild(
    h(
      'div',
      { class: 'jso-master' },
      h(
        'span',
        { class: `jso-master-status jso-master-${m.reachable ? 'reachable' : 'unreachable'}` },
        m.reachable ? m.status || 'UNKNOWN' : 'UNREACHABLE'
      ),
      h('code', { class: 'jso-master-url' }, m.url || ''),
      masterLink
    )
  );
  if (!m.reachable) {
    root.appendChild(
      state(
        'jso-state-unreachable',
        'The Spark master is unreachable',
        m.error || 'No answer from the master web UI.'
      )
    );
    return root;
  }
  const t = info.totals;
  root.appendChild(
    h(
      'div',
      { class: 'jso-totals' },
      h('div', {}, `${t.workers_alive} worker${t.workers_alive === 1 ? '' : 's'} alive`),
      bar(t.cores_used, t.cores, `${t.cores_used}/${t.cores} cores`),
      bar(
        t.memory_used_mb,
        t.memory_mb,
        `${formatMemory(t.memory_used_mb)} / ${formatMemory(t.memory_mb)}`
      )
    )
  );
  root.appendChild(h('h3', {}, 'Workers'));
  if (info.workers.length === 0) {
    root.appendChild(
      state('jso-state-empty', 'No workers registered', 'The master is up but no worker has joined yet.')
    );
  } else {
    root.appendChild(
      h(
        'table',
        { class: 'jso-workers' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Worker'), h('th', {}, 'Usage'))),
        h('tbody', {}, ...info.workers.map(workerRow))
      )
    );
  }
  root.appendChild(h('h3', {}, 'Running applications'));
  const active = info.apps?.active || [];
  if (active.length === 0) {
    root.appendChild(state('jso-state-empty jso-apps-empty', 'No running applications'));
  } else {
    root.appendChild(h('ul', { class: 'jso-apps' }, ...active.map(appItem)));
  }
  return root;
}

/** The body of the dead-kernel dialog. */
export function renderDiagnostics(d: IDiagnostics): HTMLElement {
  const evidence = d.evidence && d.evidence.length
    ? h('pre', { class: 'jso-diag-evidence' }, d.evidence.join('\n'))
    : h('div', { class: 'jso-diag-evidence-none' }, 'No telling log lines.');
  return h(
    'div',
    { class: 'jso-diagnostics', 'data-category': d.category, 'data-kernel-id': d.kernel_id },
    h('div', { class: 'jso-diag-category' }, h('span', { class: 'jso-diag-label' }, 'Category: '), h('code', {}, d.category)),
    h('p', { class: 'jso-diag-explanation' }, d.explanation),
    h('div', { class: 'jso-diag-fix' }, h('strong', {}, 'Fix: '), d.fix),
    h('div', { class: 'jso-diag-evidence-title' }, 'Evidence'),
    evidence,
    d.log_paths && d.log_paths.length
      ? h('div', { class: 'jso-diag-logs' }, 'Logs: ', ...d.log_paths.map(p => h('code', {}, p + ' ')))
      : null
  );
}

/** The admin table; `onStop` is called with a row when its Stop button is clicked. */
export function renderAdmin(
  clusters: IAdminCluster[],
  onStop: (c: IAdminCluster, button: HTMLButtonElement) => void
): HTMLElement {
  if (clusters.length === 0) {
    return state('jso-state-empty', 'No user has a Spark cluster');
  }
  const rows = clusters.map(c => {
    const stop = h('button', { class: 'jp-Button jso-admin-stop', type: 'button' }, 'Stop') as HTMLButtonElement;
    if (c.state === 'stopped') {
      stop.disabled = true;
    }
    stop.addEventListener('click', () => onStop(c, stop));
    const key = c.server_name ? `${c.user}/${c.server_name}` : c.user;
    return h(
      'tr',
      { class: 'jso-admin-row', 'data-user': c.user, 'data-server': c.server_name || '' },
      h('td', { class: 'jso-admin-user' }, key),
      h('td', { class: 'jso-admin-workers' }, c.workers === null || c.workers === undefined ? '–' : String(c.workers)),
      h('td', { class: 'jso-admin-cores' }, c.cores === null || c.cores === undefined ? '–' : String(c.cores)),
      h('td', { class: 'jso-admin-age' }, formatDuration(c.age_seconds)),
      h('td', { class: `jso-admin-state jso-admin-state-${c.state}` }, c.state),
      h('td', {}, stop)
    );
  });
  return h(
    'table',
    { class: 'jso-admin-table' },
    h('thead', {}, h('tr', {}, ...['User', 'Workers', 'Cores', 'Age', 'State', ''].map(x => h('th', {}, x)))),
    h('tbody', {}, ...rows)
  );
}
