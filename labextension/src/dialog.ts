/** The dead-kernel dialog: diagnosis + copy-log button. */
import { Clipboard, Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';
import { IDiagnostics } from './api';
import { h, renderDiagnostics } from './render';

let open: Promise<unknown> | null = null;

export async function showDiagnostics(d: IDiagnostics, reason: string): Promise<void> {
  if (open) {
    return; // one dialog at a time
  }
  const body = new Widget();
  body.addClass('jso-diag-dialog');
  const content = renderDiagnostics(d);
  body.node.appendChild(content);
  const copy = h('button', { class: 'jp-Button jso-copy-log', type: 'button' }, 'Copy log') as HTMLButtonElement;
  copy.addEventListener('click', () => {
    const text = d.log_text || d.evidence.join('\n');
    Clipboard.copyToSystem(text);
    // Also keep the text selectable for browsers that refuse clipboard access.
    copy.textContent = 'Copied';
  });
  // right under the fix, so that it is visible without scrolling past long evidence
  const actions = h('div', { class: 'jso-diag-actions' }, copy);
  const fix = content.querySelector('.jso-diag-fix');
  if (fix) {
    fix.after(actions);
  } else {
    content.appendChild(actions);
  }
  const title = d.title
    ? `PySpark kernel: ${d.title}`
    : `PySpark kernel problem (${reason})`;
  open = showDialog({
    title,
    body,
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
  try {
    await open;
  } finally {
    open = null;
  }
}
