/**
 * jupyter-spark-openstack JupyterLab extension: the "Spark cluster" sidebar
 * panel, the status bar item, the dead-kernel diagnostics dialog, the live
 * Spark progress under a running cell and the hub-admin view of every user's
 * cluster.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { IConsoleTracker } from '@jupyterlab/console';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { RequestFn, SparkApi } from './api';
import { showDiagnostics } from './dialog';
import { ClusterModel } from './model';
import { progressRendererFactory } from './progress';
import { DeadKernelWatcher } from './watcher';
import { AdminView, SparkClusterPanel, SparkStatus } from './widgets';

const SPARK_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
<path class="jp-icon3" fill="#616161" d="M12 2l2.6 6.4L21 9l-5 4.3L17.5 20 12 16.5 6.5 20 8 13.3 3 9l6.4-.6z"/></svg>`;

export const sparkIcon = new LabIcon({ name: 'jupyter-spark-openstack:spark', svgstr: SPARK_SVG });

namespace CommandIDs {
  export const openPanel = 'spark-openstack:open-panel';
  export const openAdmin = 'spark-openstack:open-admin';
}

function makeRequest(settings: ServerConnection.ISettings): RequestFn {
  return async (path, init = {}) => {
    const url = URLExt.join(settings.baseUrl, path);
    const resp = await ServerConnection.makeRequest(url, { method: init.method || 'GET' }, settings);
    let body: any = null;
    const text = await resp.text();
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = { message: text.slice(0, 200) };
      }
    }
    return { status: resp.status, body };
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-spark-openstack:plugin',
  description: 'Spark cluster panel, status bar item, dead-kernel diagnostics, live Spark progress and admin view.',
  autoStart: true,
  optional: [ILabShell, IStatusBar, INotebookTracker, IConsoleTracker, ICommandPalette, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    statusBar: IStatusBar | null,
    notebooks: INotebookTracker | null,
    consoles: IConsoleTracker | null,
    palette: ICommandPalette | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    // the live Spark progress under a running cell (src/progress.ts)
    if (rendermime) {
      rendermime.addFactory(progressRendererFactory);
    }
    const api = new SparkApi(makeRequest(app.serviceManager.serverSettings));
    const model = new ClusterModel(api);
    let isAdmin = false;
    let admin: MainAreaWidget<AdminView> | null = null;
    // the admin API answers 403 unless the browser user is a hub admin whose own hub token
    // carries the admin scopes: then no button and no command (an open admin tab says so)
    const setAdmin = (value: boolean): void => {
      isAdmin = value;
      panel.setAdmin(value);
      app.commands.notifyCommandChanged(CommandIDs.openAdmin);
    };

    app.commands.addCommand(CommandIDs.openAdmin, {
      label: 'Spark clusters of all users (admin)',
      isVisible: () => isAdmin,
      isEnabled: () => isAdmin,
      execute: () => {
        if (!isAdmin) {
          return;
        }
        if (!admin || admin.isDisposed) {
          admin = new MainAreaWidget({ content: new AdminView(api, () => setAdmin(false)) });
          admin.id = 'jupyter-spark-openstack-admin-tab';
          admin.title.label = 'Spark clusters (admin)';
          admin.title.icon = sparkIcon;
          admin.title.closable = true;
        }
        if (!admin.isAttached) {
          app.shell.add(admin, 'main');
        }
        app.shell.activateById(admin.id);
      }
    });

    const panel = new SparkClusterPanel(model, () => void app.commands.execute(CommandIDs.openAdmin));
    panel.title.icon = sparkIcon;
    app.shell.add(panel, 'left', { rank: 600 });

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'Show Spark cluster panel',
      execute: () => app.shell.activateById(panel.id)
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.openPanel, category: 'Spark' });
      palette.addItem({ command: CommandIDs.openAdmin, category: 'Spark' });
    }

    if (statusBar) {
      const item = new SparkStatus(model, () => app.shell.activateById(panel.id));
      item.id = 'jupyter-spark-openstack-status';
      statusBar.registerStatusItem('jupyter-spark-openstack:status', {
        item,
        align: 'left',
        rank: 4
      });
    }

    const watcher = new DeadKernelWatcher(api, showDiagnostics);
    for (const tracker of [notebooks, consoles]) {
      if (!tracker) {
        continue;
      }
      tracker.forEach((w: any) => watcher.watch(w.sessionContext));
      tracker.widgetAdded.connect((_: unknown, w: any) => watcher.watch(w.sessionContext));
    }

    model.start();
    api
      .adminClusters()
      .then(list => setAdmin(list !== null))
      .catch(() => undefined);
  }
};

export default plugin;
