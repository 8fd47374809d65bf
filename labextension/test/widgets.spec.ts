import { SparkApi } from '../src/api';
import { ClusterModel } from '../src/model';
import { SparkClusterPanel, SparkStatus } from '../src/widgets';
import { clusterInfo } from './fixtures';

describe('widgets', () => {
  it('status item and panel follow the model; clicking the item opens the panel', async () => {
    let info = clusterInfo();
    const model = new ClusterModel(new SparkApi(async () => ({ status: 200, body: info })));
    let opened = 0;
    const item = new SparkStatus(model, () => opened++);
    const panel = new SparkClusterPanel(model);
    expect(item.node.textContent).toBe('Spark: …');
    await model.refresh();
    expect(item.node.textContent).toBe('Spark: 2 workers · 6/16 cores');
    expect(panel.node.querySelectorAll('tr.jso-worker').length).toBe(3);
    expect(panel.node.querySelector('.jso-updated')!.textContent).toContain('every 5s');
    item.node.click();
    expect(opened).toBe(1);

    info = clusterInfo();
    info.master!.reachable = false;
    await model.refresh();
    expect(item.node.textContent).toBe('Spark: master unreachable');
    expect(item.node.classList.contains('jso-status-bad')).toBe(true);
    expect(panel.node.querySelector('.jso-state-unreachable')).not.toBeNull();
    // the admin button is hidden unless setAdmin(true)
    const btn = panel.node.querySelector('.jso-open-admin') as HTMLElement;
    expect(btn.style.display).toBe('none');
    panel.setAdmin(true);
    expect(btn.style.display).toBe('');
  });
});
