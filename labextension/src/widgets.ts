/** Lumino widgets: the sidebar panel, the status bar item and the admin view. */
import { Widget } from '@lumino/widgets';
import { IAdminCluster, SparkApi } from './api';
import { statusText } from './format';
import { ClusterModel } from './model';
import { h, renderAdmin, renderCluster } from './render';

export const PANEL_ID = 'jupyter-spark-openstack-panel';
export const ADMIN_ID = 'jupyter-spark-openstack-admin';

/** Left-sidebar panel "Spark cluster". */
export class SparkClusterPanel extends Widget {
  constructor(
    private readonly model: ClusterModel,
    private readonly openAdmin: (() => void) | null = null
  ) {
    super();
    this.id = PANEL_ID;
    this.addClass('jso-panel');
    this.title.caption = 'Spark cluster';
    const refresh = h('button', { class: 'jp-Button jso-refresh', type: 'button', title: 'Refresh now' }, 'Refresh');
    refresh.addEventListener('click', () => void this.model.refresh());
    this._adminButton = h('button', { class: 'jp-Button jso-open-admin', type: 'button' }, 'All clusters (admin)') as HTMLButtonElement;
    this._adminButton.style.display = 'none';
    this._adminButton.addEventListener('click', () => this.openAdmin && this.openAdmin());
    this._updated = h('span', { class: 'jso-updated' });
    this.node.appendChild(
      h('div', { class: 'jso-header' }, h('h2', {}, 'Spark cluster'), refresh, this._adminButton)
    );
    this._body = h('div', { class: 'jso-body' });
    this.node.appendChild(this._body);
    this.node.appendChild(h('div', { class: 'jso-footer' }, this._updated));
    this.model.changed.connect(this.update, this);
    this.update();
  }

  /** Show the admin button (only called for hub admins). */
  setAdmin(isAdmin: boolean): void {
    this._adminButton.style.display = isAdmin ? '' : 'none';
  }

  protected onUpdateRequest(): void {
    this.render();
  }

  update(): void {
    this.render();
  }

  render(): void {
    this._body.replaceChildren(renderCluster(this.model.info, this.model.error));
    const at = this.model.info?.fetched_at;
    this._updated.textContent = at
      ? `Updated ${new Date(at * 1000).toLocaleTimeString()} · every ${this.model.intervalSeconds}s`
      : '';
  }

  dispose(): void {
    this.model.changed.disconnect(this.update, this);
    super.dispose();
  }

  private _body: HTMLElement;
  private _updated: HTMLElement;
  private _adminButton: HTMLButtonElement;
}

/** Status bar item: "Spark: 4 workers · 6/16 cores"; click opens the panel. */
export class SparkStatus extends Widget {
  constructor(
    private readonly model: ClusterModel,
    onClick: () => void
  ) {
    super();
    this.addClass('jso-status');
    this.node.title = 'Spark cluster: click to open the panel';
    this.node.addEventListener('click', onClick);
    this.model.changed.connect(this.render, this);
    this.render();
  }

  render(): void {
    this.node.textContent = statusText(this.model.info, this.model.error);
    const bad = !!this.model.error || (this.model.info !== null && (!this.model.info.configured || !this.model.info.master?.reachable));
    this.node.classList.toggle('jso-status-bad', bad);
  }

  dispose(): void {
    this.model.changed.disconnect(this.render, this);
    super.dispose();
  }
}

/**
 * Main-area tab for hub admins: every user's cluster with a Stop action. `onForbidden` is
 * called when the admin API answers 403 (the browser user's hub token lacks the admin scopes):
 * the caller hides the admin entry points.
 */
export class AdminView extends Widget {
  constructor(
    private readonly api: SparkApi,
    private readonly onForbidden: (() => void) | null = null
  ) {
    super();
    this.id = ADMIN_ID;
    this.addClass('jso-admin');
    this.title.label = 'Spark clusters (admin)';
    this.title.closable = true;
    const refresh = h('button', { class: 'jp-Button jso-admin-refresh', type: 'button' }, 'Refresh');
    refresh.addEventListener('click', () => void this.refresh());
    this._message = h('div', { class: 'jso-admin-message' });
    this._body = h('div', { class: 'jso-admin-body' });
    this.node.appendChild(h('div', { class: 'jso-header' }, h('h2', {}, 'Spark clusters of all users'), refresh));
    this.node.appendChild(this._message);
    this.node.appendChild(this._body);
    void this.refresh();
  }

  async refresh(): Promise<void> {
    try {
      const clusters = await this.api.adminClusters();
      if (clusters === null) {
        this._body.replaceChildren(h('div', { class: 'jso-state' }, 'Only hub admins can see this view.'));
        if (this.onForbidden) {
          this.onForbidden();
        }
        return;
      }
      this._body.replaceChildren(renderAdmin(clusters, (c, b) => void this.stop(c, b)));
    } catch (e) {
      this._message.textContent = (e as Error).message;
    }
  }

  async stop(c: IAdminCluster, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    button.textContent = 'Stopping…';
    const who = `${c.user}${c.server_name ? '/' + c.server_name : ''}`;
    this._message.textContent = `Stopping ${who}…`;
    try {
      await this.api.stopCluster(c.user, c.server_name);
      this._message.textContent = `Stop requested for ${who}.`;
    } catch (e) {
      this._message.textContent = (e as Error).message;
      button.disabled = false;
      button.textContent = 'Stop';
      return;
    }
    await this.refresh();
  }

  private _body: HTMLElement;
  private _message: HTMLElement;
}
