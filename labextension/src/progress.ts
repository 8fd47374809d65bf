/**
 * The live Spark progress display under a running cell: display data of our MIME type, sent
 * by both kernels (jupyter_spark_openstack/kernel/progress.py). While the cell runs it is one
 * row per Spark operation (Connect) or job (classic): stages, tasks done/total, running tasks,
 * bytes read, elapsed, and a link to its page in the proxied Spark UI. When the cell ends it is
 * the kernel's one-line summary.
 */
import { PageConfig } from '@jupyterlab/coreutils';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

export const PROGRESS_MIME = 'application/vnd.jupyter-spark-openstack.progress+json';

export interface IProgressStage {
  id: number;
  tasks: number;
  completed: number;
  bytes_read: number | null;
  done: boolean;
}

export interface IProgressOperation {
  key: string;
  label: string;
  done: boolean;
  elapsed_s: number;
  tasks: number;
  completed: number;
  running: number;
  bytes_read: number | null;
  link: string | null;
  stages: IProgressStage[];
}

export interface IProgressPayload {
  version: number;
  kernel: 'connect' | 'classic';
  done: boolean;
  elapsed_s: number;
  ui: string | null;
  operations: IProgressOperation[];
  summary: string;
}

/** "1.2 MiB" (as the kernel's text fallback writes it). */
export function formatBytes(n: number | null): string {
  if (n === null || n === undefined) {
    return '';
  }
  const units: [string, number][] = [
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10]
  ];
  for (const [unit, size] of units) {
    if (n >= size) {
      return `${(n / size).toFixed(1)} ${unit}`;
    }
  }
  return `${n} B`;
}

function el(tag: string, cls: string, text?: string): HTMLElement {
  const e = document.createElement(tag);
  e.className = cls;
  if (text !== undefined) {
    e.textContent = text;
  }
  return e;
}

function link(base: string, path: string | null, text: string): HTMLElement {
  if (!path) {
    return el('span', 'jso-progress-label', text);
  }
  const a = document.createElement('a');
  a.className = 'jso-progress-label';
  a.href = base + path;
  a.target = '_blank';
  a.rel = 'noopener';
  a.textContent = text;
  a.title = 'Open in the Spark UI';
  return a;
}

/** The display's DOM for one payload (``base``: the server's base URL, ending in "/"). */
export function renderProgress(p: IProgressPayload, base: string): HTMLElement {
  const root = el('div', 'jso-progress');
  if (p.done) {
    root.classList.add('jso-progress-done');
    root.appendChild(link(base, p.ui ? `${p.ui}jobs/` : null, p.summary));
    return root;
  }
  for (const op of p.operations) {
    const row = el('div', 'jso-progress-op' + (op.done ? ' jso-progress-op-done' : ''));
    row.dataset.key = op.key;
    row.appendChild(link(base, op.link, op.label));
    const current = op.stages.filter(s => !s.done).map(s => s.id);
    row.appendChild(
      el(
        'span',
        'jso-progress-stage',
        op.done ? 'done' : current.length ? `stage ${current.join(', ')}` : 'starting'
      )
    );
    const bar = el('div', 'jso-bar jso-progress-bar');
    const fill = el('div', 'jso-bar-fill');
    fill.style.width = `${op.tasks ? Math.round((100 * op.completed) / op.tasks) : 0}%`;
    bar.appendChild(fill);
    bar.appendChild(el('span', 'jso-bar-label jso-progress-tasks', `${op.completed}/${op.tasks} tasks`));
    row.appendChild(bar);
    const meta = [];
    if (op.running) {
      meta.push(`${op.running} running`);
    }
    if (op.bytes_read !== null) {
      meta.push(`${formatBytes(op.bytes_read)} read`);
    }
    meta.push(`${op.elapsed_s.toFixed(1)} s`);
    row.appendChild(el('span', 'jso-progress-meta', meta.join(' · ')));
    root.appendChild(row);
  }
  return root;
}

export class ProgressRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(options: IRenderMime.IRendererOptions) {
    super();
    this.addClass('jso-progress-output');
    this._mime = options.mimeType;
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const payload = model.data[this._mime] as unknown as IProgressPayload;
    this.node.replaceChildren(renderProgress(payload, PageConfig.getBaseUrl()));
    return Promise.resolve();
  }

  private _mime: string;
}

export const progressRendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [PROGRESS_MIME],
  defaultRank: 50,
  createRenderer: options => new ProgressRenderer(options)
};
