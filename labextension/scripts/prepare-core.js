// build-labextension wants a directory whose package.json is JupyterLab's core
// package.json (the shared/singleton package versions). @jupyterlab/core-meta
// ships that file as core.package.json: copy it to .core/package.json.
const fs = require('fs');
const path = require('path');
const src = require.resolve('@jupyterlab/core-meta/core.package.json');
const dir = path.join(__dirname, '..', '.core');
fs.mkdirSync(dir, { recursive: true });
fs.copyFileSync(src, path.join(dir, 'package.json'));
